"""Drive one stub server's HTTP channel in memory (no sockets, a ``Clock``).

:class:`MemoryServer` builds a :class:`~backend_stub.server.StubServer` of
``conf/topology.toml`` on a ``Clock``; :meth:`MemoryServer.connect` opens a
connection to it over a :class:`HalfCloseTransport`, a ``StringTransport``
that can also shut its write side as TCP does.
"""

from __future__ import annotations

from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import IAddress
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python.failure import Failure

from backend_stub.channel import StubChannel
from backend_stub.records import Record, RequestLog
from backend_stub.server import StubServer
from backend_stub.topology import load_topology
from tests.support.farm import DEFAULT_TOPOLOGY

__all__ = ["HalfCloseTransport", "MemoryConnection", "MemoryServer"]


class HalfCloseTransport(StringTransport):
    """A StringTransport with ``loseWriteConnection`` (TCP's half-close)."""

    def __init__(self, peer: IAddress) -> None:
        StringTransport.__init__(self, peerAddress=peer)
        self.write_closed = False

    def loseWriteConnection(self) -> None:
        self.write_closed = True


class MemoryServer:
    """The stub server *name* of the example topology, on a memory reactor's Clock."""

    def __init__(self, name: str = "ex1.example.com") -> None:
        topology = load_topology(DEFAULT_TOPOLOGY)
        self.clock = MemoryReactorClock()
        self.log = RequestLog()
        self.server = StubServer(
            topology.server(name), topology.folders, topology.port, self.log, self.clock
        )

    @property
    def records(self) -> list[Record]:
        """The records made so far, oldest first."""
        return self.log.list()

    def connect(self) -> MemoryConnection:
        """A new client connection to the server."""
        return MemoryConnection(self)


class MemoryConnection:
    """One client connection: send bytes, take what the server wrote."""

    def __init__(self, server: MemoryServer) -> None:
        peer = IPv4Address("TCP", "127.0.0.1", 40000)
        self.transport = HalfCloseTransport(peer)
        channel = server.server.site.buildProtocol(peer)
        assert isinstance(channel, StubChannel)
        self.channel = channel
        channel.makeConnection(self.transport)

    def send(self, data: bytes) -> None:
        """Bytes from the client."""
        self.channel.dataReceived(data)

    def take(self) -> bytes:
        """What the server wrote since the last call."""
        data: bytes = self.transport.value()
        self.transport.clear()
        return data

    def lose(self) -> None:
        """The client goes away."""
        self.channel.connectionLost(Failure(ConnectionDone()))
