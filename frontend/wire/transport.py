"""Writing to a TCP connection without a round through the reactor.

Twisted's ``transport.write`` only queues the bytes: the socket is added to
the reactor's write set (an ``epoll_ctl``), written on the next turn of the
loop, and removed again (another ``epoll_ctl``).  For a proxy that writes a
request and a response per exchange, those calls and the extra turn are a
good part of its CPU.  :func:`send_now` writes straight to the socket when
nothing is queued before the bytes, as asyncio's transports do, and leaves
whatever the kernel does not take to ``transport.write``.  Anything but a
plain TCP connection (TLS, in-memory test transports) goes to
``transport.write`` unchanged.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.tcp import Connection

__all__ = ["send_now"]


def send_now(transport: Any, data: bytes) -> None:
    """Write ``data`` to ``transport``, straight to its socket when possible."""
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
        except OSError:  # EAGAIN, or an error transport.write will report
            sent = 0
        if sent == len(data):
            return
        data = data[sent:]
    transport.write(data)
