"""Writing to a TCP connection without a turn of the reactor: the one place
that touches Twisted's private names.

Twisted's ``transport.write`` only queues the bytes: the socket joins the
reactor's write set (an ``epoll_ctl``), is written on the next turn of the
loop, and leaves the set again (another ``epoll_ctl``).  A proxy writes a
request and a response per exchange, and those calls and the extra turn are
a good part of its CPU (``bench/run`` measures it).  :func:`write_now`
writes straight to the socket when nothing is queued before the bytes, as
asyncio's transports do, and leaves what the kernel does not take to
``transport.write``.  Anything but a plain TCP connection (TLS, test
transports) goes to ``transport.write`` unchanged.

It reads ``tcp.Connection``'s private ``dataBuffer`` and ``_tempDataBuffer``
(to know that nothing is queued) and uses its ``socket``.  Twisted is bounded
below its next major release in pyproject.toml, and
``tests/test_wire_transport.py`` fails if a release renames or changes them,
so an upgrade cannot silently make this write out of order.
"""

from __future__ import annotations

from twisted.internet.interfaces import ITransport
from twisted.internet.tcp import Connection

__all__ = ["write_now"]


def write_now(transport: ITransport, data: bytes) -> None:
    """Write ``data`` to ``transport``, straight to its socket when nothing waits."""
    if (
        isinstance(transport, Connection)
        and not transport.TLS
        and transport.connected
        and not transport.disconnecting
        and not transport.dataBuffer
        and not transport._tempDataBuffer
    ):
        try:
            sent = transport.socket.send(data)
        except OSError:  # EAGAIN, or an error that transport.write will report
            sent = 0
        if sent == len(data):
            return
        data = data[sent:]
    transport.write(data)
