"""write_now: the one function that uses Twisted's private names.

These tests fail if a Twisted release renames or changes what it reads, so
that an upgrade cannot silently reorder or slow the writes.
"""

from __future__ import annotations

import contextlib
import socket

import pytest
import pytest_twisted
from twisted.internet import defer, tcp
from twisted.internet.address import IPv4Address
from twisted.internet.protocol import Protocol, ServerFactory
from twisted.internet.tcp import Connection
from twisted.internet.testing import StringTransport

from frontend.ops.listen import DEFAULT_BACKLOG, with_backlog
from frontend.ops.reactor import global_reactor
from frontend.wire.transport import write_now


class _Keep(Protocol):
    def connectionMade(self) -> None:
        assert isinstance(self.factory, _KeepFactory)
        self.factory.made.callback(self)


class _KeepFactory(ServerFactory):
    """Fires ``made`` with the first connection's protocol."""

    protocol = _Keep

    def __init__(self) -> None:
        self.made: defer.Deferred[Protocol] = defer.Deferred()


@pytest_twisted.ensureDeferred
async def test_write_now_writes_straight_to_the_socket_in_order() -> None:
    """On a real TCP connection, bytes go out without the reactor's write
    buffer when nothing is queued, and after what is queued otherwise (the
    private names write_now reads are still Twisted's: a release that renames
    them fails here)."""
    reactor = global_reactor()
    factory = _KeepFactory()
    port = reactor.listenTCP(0, factory, interface="127.0.0.1")
    address = port.getHost()
    assert isinstance(address, IPv4Address)
    client = socket.create_connection(("127.0.0.1", address.port))
    try:
        server = await factory.made
        transport = server.transport
        assert isinstance(transport, tcp.Server)
        assert isinstance(transport, Connection)
        assert not transport.TLS
        assert transport.dataBuffer == b""
        assert transport._tempDataBuffer == []
        write_now(transport, b"first ")
        assert transport.dataBuffer == b""
        assert not transport._tempDataBuffer
        assert transport not in reactor.getWriters()
        transport.write(b"queued ")  # waits for the reactor
        write_now(transport, b"after")  # must not overtake it
        assert transport._tempDataBuffer
        client.settimeout(5)
        got = b""
        while len(got) < len(b"first queued after"):
            d: defer.Deferred[None] = defer.Deferred()
            reactor.callLater(0.01, d.callback, None)
            await d
            with contextlib.suppress(BlockingIOError):
                got += client.recv(100, socket.MSG_DONTWAIT)
        assert got == b"first queued after"
    finally:
        client.close()
        stopped = port.stopListening()
        if stopped is not None:
            await stopped


def test_anything_but_plain_tcp_goes_through_transport_write() -> None:
    """A test transport (or TLS) is written with transport.write."""
    transport = StringTransport()
    write_now(transport, b"abc")
    assert transport.value() == b"abc"


@pytest.mark.parametrize("desc", ["tcp:0", "tcp:0:interface=127.0.0.1"])
def test_listeners_get_a_deep_backlog_unless_told(desc: str) -> None:
    """Endpoint strings without backlog= get DEFAULT_BACKLOG; one that sets it keeps it."""
    assert with_backlog(desc) == f"{desc}:backlog={DEFAULT_BACKLOG}"
    assert with_backlog(f"{desc}:backlog=7") == f"{desc}:backlog=7"
