"""The back-end client over real loopback sockets: a few exchanges where the
kernel's buffers and the reactor's flow control are real."""

from __future__ import annotations

import hashlib
import socket
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest_twisted
from twisted.internet import reactor as global_reactor
from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.interfaces import IAddress
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import deferLater

from frontend.wire.interfaces import BodySink, Exchange, OutgoingRequest
from frontend.wire.pool import Upstream
from tests.backend_doubles import Sink

reactor: Any = global_reactor
MiB = 1024 * 1024


async def sleep(seconds: float) -> None:
    await deferLater(reactor, seconds)


async def until(condition: Callable[[], bool], within: float = 10.0) -> None:
    """Wait for ``condition`` (a guard against hanging, not a timing assertion)."""
    for _ in range(int(within / 0.005)):
        if condition():
            return
        await sleep(0.005)
    raise AssertionError("the condition never held")


class BackendConnection(Protocol):
    """A back end: reads requests (Content-Length bodies, hashed as they come)
    and answers each with ``answer(request_count, body_length, digest)``."""

    transport: Any

    def __init__(self, stub: Backend) -> None:
        self.stub = stub
        self.buf = b""
        self.head: bytes | None = None
        self.left = 0
        self.digest = hashlib.sha256()
        self.received = 0  # body bytes of the current request
        self.requests = 0

    def connectionMade(self) -> None:
        self.stub.conns.append(self)
        if self.stub.small_window:  # a fixed receive window: a slow reader stays slow
            self.transport.socket.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)

    def dataReceived(self, data: bytes) -> None:
        self.buf += data
        while True:
            if self.head is None:
                end = self.buf.find(b"\r\n\r\n")
                if end < 0:
                    return
                self.head, self.buf = self.buf[: end + 4], self.buf[end + 4 :]
                self.left = 0
                for line in self.head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    if name.lower() == b"content-length":
                        self.left = int(value)
                self.digest, self.received = hashlib.sha256(), 0
                if self.stub.hold:
                    self.transport.pauseProducing()  # a back end busy elsewhere
                    self.stub.holding.append(self)
            take = self.buf[: self.left]
            self.buf = self.buf[self.left :]
            self.left -= len(take)
            self.received += len(take)
            self.digest.update(take)
            if self.left:
                return
            self.requests += 1
            self.head = None
            self.transport.write(
                self.stub.answer(self.requests, self.received, self.digest.digest())
            )
            if not self.buf:
                return


class Backend(Factory):
    noisy = False

    def __init__(self, answer: Callable[[int, int, bytes], bytes]) -> None:
        self.answer = answer
        self.conns: list[BackendConnection] = []
        self.hold = False
        self.small_window = False
        self.holding: list[BackendConnection] = []

    def buildProtocol(self, _addr: IAddress | None) -> BackendConnection:
        return BackendConnection(self)


def ok(count: int, length: int, digest: bytes) -> bytes:
    body = b"%d %d %s" % (count, length, digest.hex().encode())
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)


class Env:
    def __init__(self) -> None:
        self.ports: list[Any] = []
        self.backends: list[Backend] = []
        self.clients: list[Upstream] = []

    def backend(self, answer: Callable[[int, int, bytes], bytes] = ok) -> tuple[Backend, int]:
        backend = Backend(answer)
        port = reactor.listenTCP(0, backend, interface="127.0.0.1")
        self.ports.append(port)
        self.backends.append(backend)
        return backend, port.getHost().port

    def client(self, port: int) -> Upstream:
        up = Upstream(
            reactor,
            port=port,
            connect_timeout=5.0,
            response_timeout=10.0,
            hosts={"b1": "127.0.0.1"},
            max_idle_per_backend=4,
            idle_timeout=30.0,
        )
        self.clients.append(up)
        return up

    async def close(self) -> None:
        for up in self.clients:
            up.close_idle()
        for backend in self.backends:
            for conn in backend.conns:
                conn.transport.abortConnection()
        for port in self.ports:
            await port.stopListening()
        await sleep(0.01)


@pytest_twisted.async_yield_fixture
async def env() -> AsyncIterator[Env]:
    """Back ends on free loopback ports, closed after the test."""
    e = Env()
    yield e
    await e.close()


class PacedSource:
    """A body of ``total`` bytes, given in 64 KiB pieces while not paused."""

    PIECE = 65536

    def __init__(self, total: int) -> None:
        self.total = total
        self.given = 0
        self.sink: BodySink | None = None
        self.paused = False
        self.pauses = self.resumes = 0
        self.digest = hashlib.sha256()
        self._giving = False

    @property
    def length(self) -> int | None:
        return self.total

    def stream_to(self, sink: BodySink) -> None:
        self.sink = sink
        self._give()

    def pause(self) -> None:
        self.paused = True
        self.pauses += 1

    def resume(self) -> None:
        self.paused = False
        self.resumes += 1
        self._give()

    def _give(self) -> None:
        if self._giving or self.sink is None:
            return
        self._giving = True
        try:
            while not self.paused and self.given < self.total:
                piece = bytes([self.given // self.PIECE % 251]) * min(
                    self.PIECE, self.total - self.given
                )
                self.given += len(piece)
                self.digest.update(piece)
                self.sink.body_data(piece)
            if self.given == self.total and not self.paused:
                self.given += 1  # once
                self.sink.body_end(None)
        finally:
            self._giving = False


class SlowSink(Sink):
    """A consumer that pauses the exchange every ``every`` bytes and resumes
    it on a later reactor turn; checks that nothing comes while paused."""

    def __init__(self, exchange: Exchange, every: int) -> None:
        super().__init__()
        self.exchange = exchange
        self.every = every
        self.next = every
        self.paused = False
        self.pauses = 0

    def body_data(self, data: bytes) -> None:
        assert not self.paused, "data while paused"
        super().body_data(data)
        if self.received >= self.next and self.result is None:
            self.next += self.every
            self.paused = True
            self.pauses += 1
            self.exchange.pause()
            reactor.callLater(0.002, self._resume)

    def _resume(self) -> None:
        self.paused = False
        self.exchange.resume()


async def fetch(up: Upstream, request: OutgoingRequest) -> tuple[Exchange, Sink]:
    ex = await up.send("b1", request)
    sink = Sink()
    ex.deliver_body(sink)
    await sink.ended
    return ex, sink


@pytest_twisted.ensureDeferred
async def test_keep_alive_connection_is_reused(env: Env) -> None:
    """Sequential exchanges share one real connection."""
    backend, port = env.backend()
    up = env.client(port)
    for i in range(1, 4):
        ex, sink = await fetch(up, OutgoingRequest(b"GET", b"/", [(b"Host", b"b1")]))
        assert ex.code == 200
        assert sink.result == (True, "")
        assert sink.body.startswith(b"%d 0 " % i)
    assert up.connections_made == 1
    assert len(backend.conns) == 1
    assert up.idle_count("b1") == 1


@pytest_twisted.ensureDeferred
async def test_large_request_body_is_streamed_with_flow_control(env: Env) -> None:
    """A 10 MiB body to a back end that stops reading: the source is paused
    (not read whole into memory), resumed when the back end reads, and the
    body arrives intact."""
    backend, port = env.backend()
    backend.hold = backend.small_window = True
    up = env.client(port)
    source = PacedSource(10 * MiB)
    d = up.send("b1", OutgoingRequest(b"PUT", b"/big", [], source))
    await until(lambda: bool(backend.holding) and source.pauses > 0)
    await sleep(0.2)  # the kernel's buffers fill up, then the front end's
    assert source.paused
    assert source.given < source.total
    backend.hold = False
    backend.holding[0].transport.resumeProducing()
    ex = await d
    sink = Sink()
    ex.deliver_body(sink)
    await sink.ended
    assert ex.code == 200
    assert ex.body_sent
    assert source.resumes >= 1
    _, length, digest = sink.body.split(b" ")
    assert int(length) == 10 * MiB
    assert digest == source.digest.hexdigest().encode()
    assert up.idle_count("b1") == 1


@pytest_twisted.ensureDeferred
async def test_large_response_is_read_with_pause_and_resume(env: Env) -> None:
    """A 16 MiB answer read by a consumer that keeps pausing: nothing comes
    while paused, all of it arrives, and the connection is pooled."""
    size = 16 * MiB

    def big(_count: int, _length: int, _digest: bytes) -> bytes:
        return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % size + b"z" * size

    _, port = env.backend(big)
    up = env.client(port)
    ex = await up.send("b1", OutgoingRequest(b"GET", b"/big", []))
    sink = SlowSink(ex, every=2 * MiB)
    ex.deliver_body(sink)
    await sink.ended
    assert sink.result == (True, "")
    assert sink.received == size
    assert sink.pauses >= 4
    assert up.idle_count("b1") == 1


@pytest_twisted.ensureDeferred
async def test_connection_refused(env: Env) -> None:
    """A closed port fails with ConnectionRefusedError."""
    _, port = env.backend()
    await env.ports.pop().stopListening()
    up = env.client(port)
    d: Deferred[Exchange] = up.send("b1", OutgoingRequest(b"GET", b"/", []))
    try:
        await d
    except ConnectionRefusedError:
        pass
    else:
        raise AssertionError("the request succeeded")
    assert up.connections_made == 0
