"""Doubles for the back-end client's tests.

``Sink`` keeps a body, ``Source`` is a request body the test gives piece by
piece, ``Outcome`` holds what a request's Deferred fired with.  ``Net`` runs
an :class:`~frontend.wire.pool.Upstream` on a ``MemoryReactorClock``: every
connect attempt is recorded, the test accepts or refuses it, and then plays
the back end of the connection byte by byte through a ``Peer``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, cast

from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionAborted, ConnectionDone, ConnectionRefusedError
from twisted.internet.interfaces import (
    IHostnameResolver,
    IHostResolution,
    IPushProducer,
    IResolutionReceiver,
)
from twisted.internet.protocol import Protocol
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python.failure import Failure
from zope.interface import implementer

from frontend.wire.backend import BackendConnection, BackendExchange
from frontend.wire.interfaces import BodySink, BodySource, IBackendReactor, OutgoingRequest
from frontend.wire.pool import Upstream

Pairs = list[tuple[bytes, bytes]]


class Sink:
    """A BodySink that keeps everything, and refuses data after the end or two ends."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.result: tuple[bool, str] | None = None
        self.ended: Deferred[tuple[bool, str]] = Deferred()

    @property
    def body(self) -> bytes:
        return b"".join(self.chunks)

    @property
    def received(self) -> int:
        return sum(map(len, self.chunks))

    def body_data(self, data: bytes) -> None:
        assert self.result is None, "data after the end"
        self.chunks.append(data)

    def body_end(self, error: str | None) -> None:
        assert self.result is None, "two ends"
        self.result = (error is None, error or "")
        self.ended.callback(self.result)


class Source:
    """A request body (BodySource) given by the test.

    Queued pieces go to the sink while the source is not paused: at
    ``stream_to``, at ``give`` and at ``resume``; once they are all out, the
    end set by ``finish`` (or at construction, ``ends=True``) follows.
    """

    def __init__(
        self, length: int | None, pieces: Iterable[bytes] = (), *, ends: bool = True
    ) -> None:
        self._length = length
        self._queue = list(pieces)
        self._end: tuple[str | None] | None = (None,) if ends else None
        self.sink: BodySink | None = None
        self.streams = 0  # stream_to calls
        self.paused = False
        self.pauses = self.resumes = 0
        self.given = 0  # bytes handed to the sink
        self.ended = False
        self._flushing = False

    @classmethod
    def of(cls, data: bytes) -> Source:
        """A whole body of known length, given at once."""
        return cls(len(data), [data])

    @property
    def length(self) -> int | None:
        return self._length

    def stream_to(self, sink: BodySink) -> None:
        self.streams += 1
        self.sink = sink
        self._flush()

    def pause(self) -> None:
        self.paused = True
        self.pauses += 1

    def resume(self) -> None:
        self.paused = False
        self.resumes += 1
        self._flush()

    def give(self, *pieces: bytes) -> None:
        self._queue.extend(pieces)
        self._flush()

    def finish(self, error: str | None = None) -> None:
        self._end = (error,)
        self._flush()

    @property
    def pending(self) -> int:
        """Bytes queued and not given yet."""
        return sum(map(len, self._queue))

    def _flush(self) -> None:
        if self._flushing or self.sink is None or self.ended:
            return
        self._flushing = True
        try:
            while self._queue and not self.paused:
                piece = self._queue.pop(0)
                self.given += len(piece)
                self.sink.body_data(piece)
            if not self._queue and self._end is not None and not self.ended:
                self.ended = True
                self.sink.body_end(*self._end)
        finally:
            self._flushing = False


class Outcome:
    """What a request's Deferred fired with (it is consumed: no unhandled errors)."""

    def __init__(self, d: Deferred[Any]) -> None:
        self.d = d
        self.results: list[object] = []
        d.addBoth(self.results.append)

    @property
    def fired(self) -> bool:
        return bool(self.results)

    def exchange(self) -> BackendExchange:
        assert len(self.results) == 1, f"fired {len(self.results)} times"
        (result,) = self.results
        if isinstance(result, Failure):
            result.raiseException()
        assert isinstance(result, BackendExchange), result
        return result

    def error(self) -> BaseException:
        assert len(self.results) == 1, f"fired {len(self.results)} times"
        (result,) = self.results
        assert isinstance(result, Failure), f"succeeded with {result!r}"
        assert result.value is not None
        return result.value


# -- an in-memory network -----------------------------------------------------------


class BackendTransport(StringTransport):
    """The front end's side of one back-end connection.

    Closing is asynchronous, as on a real reactor: ``loseConnection`` and
    ``abortConnection`` deliver ``connectionLost`` on the next reactor turn
    (the clock's ``advance(0)``), stopping a registered producer first.
    """

    protocol: Any

    def __init__(self, reactor: MemoryReactorClock, peer: IPv4Address | IPv6Address) -> None:
        StringTransport.__init__(self, peerAddress=peer)
        self.reactor = reactor
        self.nodelay = False
        self.aborted = False
        self.lost = False

    def setTcpNoDelay(self, enabled: bool) -> None:  # noqa: FBT001 - ITCPTransport's signature
        self.nodelay = enabled

    def loseConnection(self) -> None:
        if not self.disconnecting:
            self.disconnecting = True
            self.reactor.callLater(
                0, self.connection_lost, ConnectionDone("closed by the front end")
            )

    def abortConnection(self) -> None:
        if not self.aborted:
            self.aborted = self.disconnecting = True
            self.reactor.callLater(0, self.connection_lost, ConnectionAborted())

    def connection_lost(self, reason: Exception) -> None:
        """The connection is gone: tell the producer and the protocol, once."""
        if self.lost:
            return
        self.lost = True
        self.connected = False
        producer, self.producer = self.producer, None
        if producer is not None:
            producer.stopProducing()
        self.protocol.connectionLost(Failure(reason))


class Peer:
    """The back end of one in-memory connection."""

    def __init__(self, protocol: Protocol, transport: BackendTransport, host: str) -> None:
        self.protocol = protocol
        self.transport = transport
        self.host = host

    @property
    def received(self) -> bytes:
        """Everything the front end wrote on this connection."""
        return bytes(self.transport.value())

    def take(self) -> bytes:
        """What the front end wrote since the last take."""
        data = self.received
        self.transport.clear()
        return data

    def send(self, *pieces: bytes) -> None:
        """The back end writes: each piece is one read on the front end's side."""
        for piece in pieces:
            self.protocol.dataReceived(piece)

    def close(self, reason: Exception | None = None) -> None:
        """The back end closes (``ConnectionDone``) or the connection breaks."""
        self.transport.connection_lost(reason or ConnectionDone("closed by the back end"))

    @property
    def reading(self) -> bool:
        """The front end reads this connection (its transport is not paused)."""
        return self.transport.producerState == "producing"

    @property
    def closed(self) -> bool:
        return self.transport.disconnecting or self.transport.lost

    @property
    def aborted(self) -> bool:
        return self.transport.aborted

    @property
    def producer(self) -> IPushProducer | None:
        """The request body's writer registered with the transport, if any."""
        producer: IPushProducer | None = self.transport.producer
        return producer


@implementer(IHostResolution)
class _Resolution:
    def __init__(self, name: str) -> None:
        self.name = name

    def cancel(self) -> None:
        raise AssertionError("resolved synchronously")


@implementer(IHostnameResolver)
class NameTable:
    """Resolves the names it knows (IPv4 only), at once; others to nothing."""

    def __init__(self, names: dict[str, str]) -> None:
        self.names = names
        self.asked: list[str] = []

    def resolveHostName(
        self,
        resolutionReceiver: IResolutionReceiver,
        hostName: str,
        portNumber: int = 0,
        addressTypes: Sequence[type[object]] | None = None,  # noqa: ARG002 - the interface's; IPv4 only
        transportSemantics: str = "TCP",  # noqa: ARG002 - the interface's; TCP only
    ) -> IHostResolution:
        self.asked.append(hostName)
        resolution = _Resolution(hostName)
        resolutionReceiver.resolutionBegan(resolution)
        address = self.names.get(hostName)
        if address is not None:
            resolutionReceiver.addressResolved(IPv4Address("TCP", address, portNumber))
        resolutionReceiver.resolutionComplete()
        return resolution


BACKEND_PORT = 8080


class Net:
    """An Upstream on a memory reactor whose connections the test completes."""

    def __init__(
        self,
        *,
        response_timeout: float = 5.0,
        idle_timeout: float = 30.0,
        max_idle: int = 4,
        connect_timeout: float = 2.0,
        hosts: dict[str, str] | None = None,
        names: dict[str, str] | None = None,
    ) -> None:
        self.reactor = MemoryReactorClock()
        self.names = NameTable(names or {})
        self.reactor.installNameResolver(self.names)
        self.up = Upstream(
            cast("IBackendReactor", self.reactor),  # provides IReactorTCP and IReactorTime
            port=BACKEND_PORT,
            connect_timeout=connect_timeout,
            response_timeout=response_timeout,
            hosts={"b1": "10.0.0.1", "b2": "10.0.0.2"} if hosts is None else hosts,
            max_idle_per_backend=max_idle,
            idle_timeout=idle_timeout,
        )
        self.peers: list[Peer] = []
        self._handled = 0  # connect attempts accepted or refused

    def send(
        self,
        method: bytes = b"GET",
        target: bytes = b"/",
        headers: Pairs | None = None,
        body: BodySource | None = None,
        *,
        expect_continue: bool = False,
        server: str = "b1",
    ) -> Outcome:
        request = OutgoingRequest(method, target, headers or [], body, expect_continue)
        return Outcome(self.up.send(server, request))

    @property
    def attempts(self) -> list[tuple[str, int, Any, float, Any]]:
        """The connect attempts so far: (host, port, factory, timeout, bind)."""
        return list(self.reactor.tcpClients)

    @property
    def waiting(self) -> int:
        """Connect attempts neither accepted nor refused yet."""
        return len(self.reactor.tcpClients) - self._handled

    def _next(self) -> tuple[str, int, Any]:
        assert self.waiting > 0, "no connect attempt is waiting"
        host, port, factory, _, _ = self.reactor.tcpClients[self._handled]
        self._handled += 1
        return host, port, factory

    def accept(self) -> Peer:
        """The oldest waiting connect attempt succeeds."""
        host, port, factory = self._next()
        address = (IPv6Address if ":" in host else IPv4Address)("TCP", host, port)
        protocol = factory.buildProtocol(address)
        transport = BackendTransport(self.reactor, address)
        transport.protocol = protocol
        protocol.makeConnection(transport)
        peer = Peer(protocol, transport, host)
        self.peers.append(peer)
        return peer

    def refuse(self, reason: Exception | None = None) -> None:
        """The oldest waiting connect attempt fails."""
        index = self._handled
        _, _, factory = self._next()
        connector = self.reactor.connectors[index]
        factory.clientConnectionFailed(connector, Failure(reason or ConnectionRefusedError()))

    def advance(self, seconds: float = 0) -> None:
        self.reactor.advance(seconds)

    def connection(self, peer: Peer) -> BackendConnection:
        """The front end's protocol behind ``peer`` (under the endpoint's wrapper)."""
        wrapped = getattr(peer.protocol, "_wrappedProtocol", peer.protocol)
        assert isinstance(wrapped, BackendConnection)
        return wrapped


def response(body: bytes = b"hello", code: bytes = b"200 OK", headers: bytes = b"") -> bytes:
    """A response with a Content-Length body."""
    return b"HTTP/1.1 %s\r\n%sContent-Length: %d\r\n\r\n%s" % (code, headers, len(body), body)


def fetch(
    net: Net,
    answer: bytes,
    peer: Peer | None = None,
    *,
    method: bytes = b"GET",
    target: bytes = b"/",
    headers: Pairs | None = None,
) -> tuple[BackendExchange, Sink]:
    """Send a request (on a new connection unless ``peer`` is pooled), answer
    it with ``answer`` in one read, and read the body to a sink."""
    out = net.send(method, target, headers)
    if peer is None:
        peer = net.accept()
    peer.send(answer)
    ex = out.exchange()
    sink = Sink()
    ex.deliver_body(sink)
    return ex, sink
