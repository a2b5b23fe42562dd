"""The lean back-end HTTP client, against stub back ends on real loopback sockets."""

from __future__ import annotations

import os
import tempfile
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import reactor as global_reactor
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.error import ConnectionRefusedError, DNSLookupError
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.internet.task import deferLater
from twisted.python.failure import Failure

from frontend.errors import BackendFailed, GatewayTimeout
from frontend.wire.bodies import EMPTY_BODY, RequestBody
from frontend.wire.chunked import ChunkedDecoder
from frontend.wire.upstream import BackendResponse, Upstream

reactor: Any = global_reactor

# -- a stub back end ------------------------------------------------------------


class Request:
    """One request as the stub received it."""

    def __init__(self, head: bytes, body: bytes, conn: StubConnection, index: int) -> None:
        self.head = head
        self.body = body
        self.conn = conn
        self.index = index  # 0 for the first request on its connection

    @property
    def method(self) -> bytes:
        return self.head.split(b" ", 1)[0]


Answer = Callable[["StubConnection", Request], None]


class StubConnection(Protocol):
    """Parses requests (Content-Length bodies only) and lets the test answer them."""

    transport: Any

    def __init__(self, stub: Stub) -> None:
        self.stub = stub
        self.buf = b""
        self.count = 0
        self.closed: Deferred[None] = Deferred()

    def connectionMade(self) -> None:
        self.stub.conns.append(self)

    def dataReceived(self, data: bytes) -> None:
        self.buf += data
        while True:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self.buf[: end + 4]
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.lower() == b"content-length":
                    length = int(value)
            if len(self.buf) < end + 4 + length:
                return
            body = self.buf[end + 4 : end + 4 + length]
            self.buf = self.buf[end + 4 + length :]
            request = Request(head, body, self, self.count)
            self.count += 1
            self.stub.requests.append(request)
            self.stub.answer(self, request)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.closed.callback(None)

    def send(self, data: bytes) -> None:
        self.transport.write(data)


class Stub(Factory):
    """A back end answering each request with ``answer``; records what it received."""

    noisy = False

    def __init__(self, answer: Answer) -> None:
        self.answer = answer
        self.conns: list[StubConnection] = []
        self.requests: list[Request] = []
        self.port = 0

    def buildProtocol(self, addr: Any) -> StubConnection:
        return StubConnection(self)


def ok(body: bytes = b"hello", extra: bytes = b"") -> Answer:
    """Answer 200 with a Content-Length body."""

    def answer(conn: StubConnection, request: Request) -> None:
        conn.send(b"HTTP/1.1 200 OK\r\n%sContent-Length: %d\r\n\r\n%s" % (extra, len(body), body))

    return answer


def raw(data: bytes, close: bool = False) -> Answer:
    """Answer with these exact bytes, then maybe close."""

    def answer(conn: StubConnection, request: Request) -> None:
        conn.send(data)
        if close:
            conn.transport.loseConnection()

    return answer


def silent(conn: StubConnection, request: Request) -> None:
    """Never answer."""


class Sink:
    """A BodySink that keeps everything."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.ended: Deferred[tuple[bool, str]] = Deferred()
        self.ended.addTimeout(5, reactor)  # a body that never ends fails the test
        self.result: tuple[bool, str] | None = None

    @property
    def body(self) -> bytes:
        return b"".join(self.chunks)

    @property
    def received(self) -> int:
        return sum(map(len, self.chunks))

    def body_data(self, data: bytes) -> None:
        assert self.result is None, "data after the end"
        self.chunks.append(data)

    def body_end(self, complete: bool, reason: str) -> None:
        assert self.result is None, "two ends"
        self.result = (complete, reason)
        self.ended.callback(self.result)


async def sleep(seconds: float) -> None:
    await deferLater(reactor, seconds)


class Env:
    """Starts stubs and clients; the fixture cleans up after them."""

    def __init__(self) -> None:
        self.ports: list[Any] = []
        self.stubs: list[Stub] = []
        self.clients: list[Upstream] = []

    def stub(self, answer: Answer) -> Stub:
        stub = Stub(answer)
        port = reactor.listenTCP(0, stub, interface="127.0.0.1")
        stub.port = port.getHost().port
        self.ports.append(port)
        self.stubs.append(stub)
        return stub

    def client(self, port: int, **kw: Any) -> Upstream:
        settings: dict[str, Any] = {
            "connect_timeout": 2.0,
            "response_timeout": 5.0,
            "max_idle_per_backend": 4,
            "idle_timeout": 30.0,
        }
        settings.update(kw)
        up = Upstream(reactor, port=port, hosts={"b1": "127.0.0.1"}, **settings)
        self.clients.append(up)
        return up

    async def close(self) -> None:
        for up in self.clients:
            up.close_idle()
        for stub in self.stubs:
            for conn in stub.conns:
                conn.transport.abortConnection()
        for port in self.ports:
            await port.stopListening()
        await sleep(0)


@pytest_twisted.async_yield_fixture
async def env() -> AsyncIterator[Env]:
    """Stub back ends on free loopback ports, closed after the test."""
    e = Env()
    yield e
    await e.close()


async def fetch(
    up: Upstream,
    method: bytes = b"GET",
    target: bytes = b"/",
    headers: list[tuple[bytes, bytes]] | None = None,
    body: RequestBody = EMPTY_BODY,
) -> tuple[BackendResponse, Sink]:
    """Send a request to b1 and read the whole response body."""
    response = await up.send("b1", method, target, headers or [], body)
    sink = Sink()
    response.deliver_body(sink)
    await sink.ended
    return response, sink


async def closed(conn: StubConnection, within: float = 1.0) -> None:
    """Wait until the stub's side of ``conn`` is closed; fail after ``within`` seconds."""
    for _ in range(int(within / 0.01)):
        if conn.closed.called:
            return
        await sleep(0.01)
    raise AssertionError("the connection is still open")


async def fails(d: Deferred[Any]) -> BaseException:
    """The exception ``d`` fails with; fails the test when it succeeds."""
    try:
        await d
    except BaseException as e:  # noqa: B036 -- CancelledError is what we look for
        return e
    raise AssertionError("the request succeeded")


# -- requests and responses --------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_get_with_content_length_reuses_the_connection(env: Env) -> None:
    """Three sequential GETs get their bodies over one pooled connection."""
    stub = env.stub(ok(b"hello"))
    up = env.client(stub.port)
    for _ in range(3):
        response, sink = await fetch(up)
        assert (response.code, response.phrase, response.length) == (200, b"OK", 5)
        assert sink.result == (True, "") and sink.body == b"hello"
    assert up.connections_made == 1 and len(stub.conns) == 1
    assert [r.index for r in stub.requests] == [0, 1, 2]
    assert up.idle_count("B1") == 1


@pytest_twisted.ensureDeferred
async def test_request_head_is_sent_byte_for_byte(env: Env) -> None:
    """Target and headers go out exactly as given, in order; Content-Length only when due."""
    stub = env.stub(ok())
    up = env.client(stub.port)
    headers = [(b"Host", b"b1.example.com"), (b"X-Zed", b"2"), (b"x-alpha", b"a, b")]
    await fetch(up, target=b"/a%2Fb?x=1&y=%20", headers=headers)
    await fetch(up, b"POST", b"/p")
    await fetch(up, b"DELETE", b"/d")
    assert [r.head for r in stub.requests] == [
        b"GET /a%2Fb?x=1&y=%20 HTTP/1.1\r\nHost: b1.example.com\r\nX-Zed: 2\r\n"
        b"x-alpha: a, b\r\n\r\n",
        b"POST /p HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
        b"DELETE /d HTTP/1.1\r\n\r\n",
    ]


@pytest_twisted.ensureDeferred
async def test_small_post_body_arrives_with_content_length(env: Env) -> None:
    """A bytes body follows its head with the right Content-Length."""
    stub = env.stub(ok(b"done"))
    up = env.client(stub.port)
    await fetch(up, b"POST", b"/x", [(b"Host", b"b1")], RequestBody(b"a=1&b=2"))
    (request,) = stub.requests
    assert request.head == b"POST /x HTTP/1.1\r\nHost: b1\r\nContent-Length: 7\r\n\r\n"
    assert request.body == b"a=1&b=2"


@pytest_twisted.ensureDeferred
async def test_large_file_body_is_streamed_intact_and_replayable(env: Env) -> None:
    """A 1 MiB file body arrives intact, twice, whatever the file's position was."""
    stub = env.stub(ok(b"done"))
    up = env.client(stub.port)
    data = os.urandom(1024 * 1024)
    with tempfile.TemporaryFile() as f:
        f.write(data)  # the position is now at the end: the client must rewind
        body = RequestBody(file=f, length=len(data))
        for _ in range(2):
            response, sink = await fetch(up, b"PUT", b"/big", body=body)
            assert sink.body == b"done"
    assert [r.body == data for r in stub.requests] == [True, True]
    assert b"Content-Length: 1048576\r\n" in stub.requests[0].head
    assert up.connections_made == 1


@pytest_twisted.ensureDeferred
async def test_headers_are_kept_raw_and_looked_up_case_insensitively(env: Env) -> None:
    """Headers keep their case, order and framing headers; header() ignores case."""
    stub = env.stub(ok(b"x", extra=b"Set-Cookie: a=1\r\nX-Thing:  v \r\nset-cookie: b=2\r\n"))
    up = env.client(stub.port)
    response, _ = await fetch(up)
    assert response.headers == [
        (b"Set-Cookie", b"a=1"),
        (b"X-Thing", b"v"),
        (b"set-cookie", b"b=2"),
        (b"Content-Length", b"1"),
    ]
    assert response.header(b"set-cookie") == [b"a=1", b"b=2"]
    assert response.header(b"x-missing") == []


CHUNKED = (
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"5\r\nhello\r\n"
    b"1;ext=1\r\n \r\n"
    b"0000A\r\n0123456789\r\n"
    b"0\r\nX-Trailer: t\r\n\r\n"
)


@pytest_twisted.ensureDeferred
async def test_chunked_body_is_dechunked_across_awkward_splits(env: Env) -> None:
    """Chunks cut inside sizes, CRLFs, data and trailers come out as the payload only."""
    cuts = [3, 47, 48, 50, 53, 54, 55, 60, 63, 70, 78, 86, 87, 90, len(CHUNKED) - 1]
    pieces = [CHUNKED[a:b] for a, b in zip([0, *cuts], [*cuts, len(CHUNKED)], strict=True)]

    def answer(conn: StubConnection, request: Request) -> None:
        for i, piece in enumerate(pieces):
            reactor.callLater(0.005 * i, conn.send, piece)

    stub = env.stub(answer)
    up = env.client(stub.port)
    for _ in range(2):
        response, sink = await fetch(up)
        assert response.length is None
        assert sink.result == (True, "")
        assert sink.body == b"hello 0123456789"
    assert up.connections_made == 1 and up.idle_count("b1") == 1


@pytest_twisted.ensureDeferred
async def test_response_dribbled_one_byte_per_write_is_parsed(env: Env) -> None:
    """A head and chunked body arriving one byte at a time parse the same."""

    def answer(conn: StubConnection, request: Request) -> None:
        def drip(i: int) -> None:
            if i < len(CHUNKED) and conn.transport.connected:
                conn.send(CHUNKED[i : i + 1])
                reactor.callLater(0, drip, i + 1)

        drip(0)

    stub = env.stub(answer)
    up = env.client(stub.port)
    response, sink = await fetch(up)
    assert response.code == 200 and sink.body == b"hello 0123456789"
    assert sink.result == (True, "") and up.idle_count("b1") == 1


def test_chunked_decoder_fed_one_byte_at_a_time() -> None:
    """The decoder gives the payload and returns the bytes after the body's end."""
    decoder = ChunkedDecoder()
    out: list[bytes] = []
    body = CHUNKED[CHUNKED.index(b"\r\n\r\n") + 4 :] + b"NEXT"
    rests = []
    for i in range(len(body)):
        assert not decoder.done
        rests.append(decoder.feed(body[i : i + 1], out.append))
        if decoder.done:
            break
    assert b"".join(out) == b"hello 0123456789"
    assert decoder.done and i == len(body) - 5
    assert rests[-1] == b"" and b"".join(rests) == b""
    whole = ChunkedDecoder()
    assert whole.feed(body, out.append) == b"NEXT" and whole.done


@pytest.mark.parametrize(
    "body",
    [
        b"0\r\n" + b"X: y\r\n" * 20000,
        b"x\r\n",
        b"5\r\nhelloXX",
        b"-1\r\n",
        b"0x5\r\n",
        b" \r\n",
        b"1" * 20 + b"\r\n",
    ],
)
def test_chunked_decoder_refuses_broken_framing(body: bytes) -> None:
    """Bad sizes and missing CRLFs after data raise ValueError."""
    with pytest.raises(ValueError):
        ChunkedDecoder().feed(body, lambda data: None)


@pytest_twisted.ensureDeferred
async def test_close_delimited_body_ends_at_close(env: Env) -> None:
    """Without Content-Length or chunking the body runs to the close; not pooled."""
    stub = env.stub(raw(b"HTTP/1.1 200 OK\r\nX: y\r\n\r\nuntil the end", close=True))
    up = env.client(stub.port)
    response, sink = await fetch(up)
    assert response.length is None
    assert sink.result == (True, "") and sink.body == b"until the end"
    assert up.idle_count("b1") == 0


@pytest_twisted.ensureDeferred
async def test_body_received_before_deliver_body_is_kept(env: Env) -> None:
    """Body bytes that arrive before deliver_body are buffered, then given at once."""
    stub = env.stub(raw(b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nab"))
    up = env.client(stub.port)
    response = await up.send("b1", b"GET", b"/", [], EMPTY_BODY)
    stub.conns[0].send(b"cd")
    await sleep(0.05)
    stub.conns[0].send(b"ef")
    await sleep(0.05)
    sink = Sink()
    response.deliver_body(sink)
    assert sink.received >= 4  # what was read is delivered synchronously
    assert await sink.ended == (True, "")
    assert sink.body == b"abcdef" and up.idle_count("b1") == 1


@pytest_twisted.ensureDeferred
async def test_head_response_has_no_body_and_keeps_the_connection(env: Env) -> None:
    """A HEAD answer's Content-Length announces no body; the connection is reused."""
    stub = env.stub(raw(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n"))
    up = env.client(stub.port)
    for _ in range(2):
        response, sink = await fetch(up, b"HEAD")
        assert response.length == 0 and response.header(b"content-length") == [b"100"]
        assert sink.result == (True, "") and sink.body == b""
    assert up.connections_made == 1 and up.idle_count("b1") == 1


@pytest.mark.parametrize("status", [b"204 No Content", b"304 Not Modified"])
@pytest_twisted.ensureDeferred
async def test_204_and_304_have_no_body(env: Env, status: bytes) -> None:
    """204 and 304 end at their head; the connection is pooled."""
    stub = env.stub(raw(b"HTTP/1.1 " + status + b"\r\nETag: x\r\n\r\n"))
    up = env.client(stub.port)
    response = await up.send("b1", b"GET", b"/", [], EMPTY_BODY)
    assert response.length == 0
    sink = Sink()
    response.deliver_body(sink)
    assert sink.result == (True, "")  # at once
    assert up.idle_count("b1") == 1


@pytest_twisted.ensureDeferred
async def test_100_continue_is_skipped(env: Env) -> None:
    """Interim 1xx answers are read past; the final answer is the response."""
    stub = env.stub(
        raw(
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </s>\r\n\r\n"
            b"HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok"
        )
    )
    up = env.client(stub.port)
    response, sink = await fetch(up, b"POST", body=RequestBody(b"x"))
    assert (response.code, response.phrase, sink.body) == (201, b"Created", b"ok")


@pytest.mark.parametrize(
    "head",
    [
        b"HTTP/1.1 2OO OK\r\n\r\n",
        b"hello there\r\n\r\n",
        b"HTTP/2 200 OK\r\n\r\n",
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nNo colon here\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nBad Name: x\r\n\r\n",
        b"HTTP/1.1 200 OK\r\n folded: x\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nX: a\nContent-Length: 1\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"HTTP/1.1 200 OK\r\n" + b"X: y\r\n" * 101 + b"\r\n",
        b"HTTP/1.1 200 OK\r\nX: " + b"y" * (65 * 1024),
    ],
    ids=[
        "bad-code",
        "not-http",
        "http2",
        "101",
        "no-colon",
        "space-in-name",
        "obs-fold",
        "negative-length",
        "two-lengths",
        "bare-lf",
        "length-and-chunked",
        "too-many-header-lines",
        "head-over-64k",
    ],
)
@pytest_twisted.ensureDeferred
async def test_malformed_response_head_fails_with_backend_failed(env: Env, head: bytes) -> None:
    """Unparsable heads fail the request with BackendFailed and abort the connection."""
    stub = env.stub(raw(head))
    up = env.client(stub.port)
    error = await fails(up.send("b1", b"GET", b"/", [], EMPTY_BODY))
    assert isinstance(error, BackendFailed), error
    await closed(stub.conns[0])
    assert up.idle_count("b1") == 0


@pytest_twisted.ensureDeferred
async def test_connection_refused_fails_with_twisteds_error(env: Env) -> None:
    """A closed port fails with ConnectionRefusedError (the caller may try elsewhere)."""
    port = reactor.listenTCP(0, Stub(silent), interface="127.0.0.1")
    number = port.getHost().port
    await port.stopListening()
    up = env.client(number)
    error = await fails(up.send("b1", b"GET", b"/", [], EMPTY_BODY))
    assert isinstance(error, ConnectionRefusedError), error
    assert up.connections_made == 0


@pytest_twisted.ensureDeferred
async def test_names_without_a_hosts_entry_are_resolved(env: Env) -> None:
    """A server name not in hosts is resolved by the reactor; an unknown one fails."""
    stub = env.stub(ok())
    up = env.client(stub.port)
    response = await up.send("LocalHost", b"GET", b"/", [], EMPTY_BODY)
    response.deliver_body(Sink())
    assert response.code == 200 and up.connections_made == 1
    error = await fails(up.send("nothing.invalid", b"GET", b"/", [], EMPTY_BODY))
    assert isinstance(error, DNSLookupError), error


@pytest_twisted.ensureDeferred
async def test_no_answer_in_time_fails_with_gateway_timeout(env: Env) -> None:
    """A back end that never answers: GatewayTimeout, and the connection is closed."""
    stub = env.stub(silent)
    up = env.client(stub.port, response_timeout=0.2)
    error = await fails(up.send("b1", b"GET", b"/", [], EMPTY_BODY))
    assert isinstance(error, GatewayTimeout)
    assert error.detail == "b1: no response in 0.2s"
    await closed(stub.conns[0])


@pytest_twisted.ensureDeferred
async def test_connection_lost_before_the_head_fails_with_backend_failed(env: Env) -> None:
    """A fresh connection closed before the head is complete: BackendFailed, no retry."""
    stub = env.stub(raw(b"HTTP/1.1 200 OK\r\nContent-", close=True))
    up = env.client(stub.port)
    error = await fails(up.send("b1", b"GET", b"/", [], EMPTY_BODY))
    assert isinstance(error, BackendFailed)
    assert len(stub.requests) == 1


def stale_after_first(conn: StubConnection, request: Request) -> None:
    """Answer the first request of a connection; close on the next, as an idle-timed-out peer."""
    if request.index == 0:
        ok(b"first")(conn, request)
    else:
        conn.transport.loseConnection()


@pytest_twisted.ensureDeferred
async def test_stale_pooled_connection_is_retried_once_for_get(env: Env) -> None:
    """A GET on a pooled connection that dies unanswered is sent again on a new one."""
    stub = env.stub(stale_after_first)
    up = env.client(stub.port)
    await fetch(up)
    response, sink = await fetch(up, target=b"/again")
    assert sink.body == b"first"
    assert up.connections_made == 2
    assert [(r.head.split(b"\r\n")[0], r.index) for r in stub.requests] == [
        (b"GET / HTTP/1.1", 0),
        (b"GET /again HTTP/1.1", 1),
        (b"GET /again HTTP/1.1", 0),
    ]


@pytest_twisted.ensureDeferred
async def test_stale_pooled_connection_never_resends_post(env: Env) -> None:
    """A POST on a pooled connection that dies unanswered fails; it is sent once only."""
    stub = env.stub(stale_after_first)
    up = env.client(stub.port)
    await fetch(up)
    error = await fails(up.send("b1", b"POST", b"/p", [], RequestBody(b"once")))
    assert isinstance(error, BackendFailed)
    assert [r.method for r in stub.requests] == [b"GET", b"POST"]
    assert up.connections_made == 1


@pytest_twisted.ensureDeferred
async def test_cancel_aborts_the_connection(env: Env) -> None:
    """Cancelling the request fails it with CancelledError and closes the connection."""
    arrived: Deferred[None] = Deferred()
    arrived.addTimeout(5, reactor)
    stub = env.stub(lambda conn, request: arrived.callback(None))
    up = env.client(stub.port, response_timeout=30.0)
    d = up.send("b1", b"GET", b"/", [], EMPTY_BODY)
    await arrived
    d.cancel()
    assert isinstance(await fails(d), CancelledError)
    await closed(stub.conns[0])
    assert up.idle_count("b1") == 0


@pytest_twisted.ensureDeferred
async def test_cancel_while_connecting_fails_with_cancelled_error(env: Env) -> None:
    """Cancelling before the connection is made stops the connect attempt."""
    stub = env.stub(ok())
    up = env.client(stub.port)
    d = up.send("b1", b"GET", b"/", [], EMPTY_BODY)
    d.cancel()  # synchronously: the TCP connect is still in progress
    assert isinstance(await fails(d), CancelledError)
    await sleep(0.05)
    assert up.connections_made == 0 and stub.conns == []


# -- flow control and aborts -----------------------------------------------------

BIG = 8 * 1024 * 1024


@pytest_twisted.ensureDeferred
async def test_pause_stops_reading_until_resume(env: Env) -> None:
    """While paused nothing more is read from the back end; resume reads the rest."""
    stub = env.stub(raw(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % BIG + b"x" * BIG))
    up = env.client(stub.port)
    response = await up.send("b1", b"GET", b"/", [], EMPTY_BODY)
    sink = Sink()
    response.pause()
    response.deliver_body(sink)
    await sleep(0.1)
    held = sink.received
    await sleep(0.1)
    assert sink.received == held < BIG
    response.resume()
    assert await sink.ended == (True, "")
    assert sink.received == BIG and up.idle_count("b1") == 1


@pytest_twisted.ensureDeferred
async def test_connection_paused_when_its_body_ends_is_pooled_reading(env: Env) -> None:
    """A body completed while paused still leaves a working connection in the pool."""
    stub = env.stub(ok(b"small"))
    up = env.client(stub.port, response_timeout=1.0)
    response = await up.send("b1", b"GET", b"/", [], EMPTY_BODY)
    response.pause()
    sink = Sink()
    response.deliver_body(sink)  # the body arrived with the head: it ends at once
    assert sink.result == (True, "") and up.idle_count("b1") == 1
    response.resume()  # too late to matter: a no-op
    response, sink = await fetch(up)
    assert sink.body == b"small" and up.connections_made == 1


@pytest_twisted.ensureDeferred
async def test_abort_during_body_ends_the_sink_incomplete(env: Env) -> None:
    """abort() mid-body tells the sink body_end(False, ...) and closes the connection."""
    stub = env.stub(raw(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npart"))
    up = env.client(stub.port)
    response = await up.send("b1", b"GET", b"/", [], EMPTY_BODY)
    sink = Sink()
    response.deliver_body(sink)
    assert sink.body == b"part" and sink.result is None
    response.abort()
    assert sink.result == (False, "aborted")
    await closed(stub.conns[0])
    assert up.idle_count("b1") == 0


@pytest_twisted.ensureDeferred
async def test_connection_lost_mid_body_ends_the_sink_incomplete(env: Env) -> None:
    """A body cut short of its Content-Length or last chunk is reported incomplete."""
    for answer in (
        b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nshort\r\n",
    ):
        stub = env.stub(raw(answer, close=True))
        up = env.client(stub.port)
        response, sink = await fetch(up)
        assert sink.body == b"short"
        assert sink.result is not None and sink.result[0] is False
        assert up.idle_count("b1") == 0


# -- the pool ------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_idle_connection_is_closed_after_idle_timeout(env: Env) -> None:
    """A pooled connection unused for idle_timeout seconds is closed."""
    stub = env.stub(ok())
    up = env.client(stub.port, idle_timeout=0.1)
    await fetch(up)
    assert up.idle_count("b1") == 1
    await closed(stub.conns[0])
    assert up.idle_count("b1") == 0


@pytest_twisted.ensureDeferred
async def test_idle_connection_closed_by_the_back_end_leaves_the_pool(env: Env) -> None:
    """A back end closing an idle connection removes it from the pool."""
    stub = env.stub(ok())
    up = env.client(stub.port)
    await fetch(up)
    stub.conns[0].transport.loseConnection()
    await closed(stub.conns[0])
    await sleep(0.05)
    assert up.idle_count("b1") == 0
    response, sink = await fetch(up)
    assert sink.body == b"hello" and up.connections_made == 2


@pytest_twisted.ensureDeferred
async def test_pool_reuses_the_most_recently_idle_connection(env: Env) -> None:
    """Idle connections are taken last in, first out."""

    def answer(conn: StubConnection, request: Request) -> None:
        delay = 0.05 if conn is stub.conns[0] and request.index == 0 else 0
        reactor.callLater(delay, ok(), conn, request)

    stub = env.stub(answer)
    up = env.client(stub.port)
    both = [Deferred.fromCoroutine(fetch(up)) for _ in range(2)]
    for d in both:
        await d  # the stub's first connection answers, and is released, last
    await fetch(up)
    assert up.connections_made == 2
    assert stub.requests[2].conn is stub.conns[0]


@pytest_twisted.ensureDeferred
async def test_max_idle_per_backend_is_respected(env: Env) -> None:
    """Only max_idle_per_backend connections stay pooled; the others are closed."""
    stub = env.stub(ok())
    up = env.client(stub.port, max_idle_per_backend=1)
    sends = [up.send("b1", b"GET", b"/", [], EMPTY_BODY) for _ in range(3)]
    sinks = []
    for d in sends:
        sink = Sink()
        (await d).deliver_body(sink)
        sinks.append(sink)
    for sink in sinks:
        await sink.ended
    assert up.connections_made == 3 and up.idle_count("b1") == 1
    await sleep(0.05)
    assert sum(conn.closed.called for conn in stub.conns) == 2
    up.close_idle()
    assert up.idle_count("b1") == 0
    await sleep(0.05)
    assert all(conn.closed.called for conn in stub.conns)


@pytest.mark.parametrize(
    "answer",
    [
        b"HTTP/1.1 200 OK\r\nConnection: keep-alive, close\r\nContent-Length: 2\r\n\r\nok",
        b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok",
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokGARBAGE",
        b"HTTP/1.1 204 No Content\r\n\r\nGARBAGE",
    ],
    ids=["connection-close", "http-1.0", "extra-bytes", "extra-bytes-no-body"],
)
@pytest_twisted.ensureDeferred
async def test_connection_not_reusable_is_not_pooled(env: Env, answer: bytes) -> None:
    """Connection: close, HTTP/1.0 or bytes past the response: closed, not pooled."""
    stub = env.stub(raw(answer))
    up = env.client(stub.port)
    response, sink = await fetch(up)
    assert sink.result == (True, "")
    assert up.idle_count("b1") == 0
    await closed(stub.conns[0])
