"""The client-connection protocol in memory: parsing, limits, deadlines, responses.

The same behaviours are tested against a real `feproxy serve` in
test_hostile.py and test_forwarding_real.py; these are the fast, exact ones.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure

from frontend.wire.incoming import IncomingRequest as Req
from frontend.wire.server import PAUSE_AT, SPOOL, ClientLimits, FrontEndFactory

H = b"Host: fe\r\n"


class Conn:
    """One client connection over a StringTransport; requests are kept, not answered."""

    def __init__(self, limits: ClientLimits | None = None, answer: Any = None) -> None:
        self.clock = Clock()
        self.requests: list[Req] = []
        self.answer = answer
        self.factory = FrontEndFactory(self._handle, limits or ClientLimits(), self.clock)
        self.proto = self.factory.buildProtocol(IPv4Address("TCP", "192.0.2.7", 5555))
        self.transport = StringTransport(peerAddress=IPv4Address("TCP", "192.0.2.7", 5555))
        self.proto.makeConnection(self.transport)

    def _handle(self, request: Req) -> None:
        self.requests.append(request)
        if self.answer is not None:
            self.answer(request)

    def send(self, data: bytes) -> None:
        self.proto.dataReceived(data)

    @property
    def out(self) -> bytes:
        return bytes(self.transport.value())

    @property
    def closed(self) -> bool:
        return bool(self.transport.disconnecting)


def ok(request: Req, body: bytes = b"hi") -> None:
    request.respond(200, b"OK", [(b"X-A", b"1")], len(body))
    request.write(body)
    request.finish()


def test_request_head_and_peer_reach_the_handler() -> None:
    c = Conn()
    c.send(b"PROPFIND /exchange/a%20b/?x=1 HTTP/1.1\r\nHost: fe\r\nDepth: 1\r\n\r\n")
    (r,) = c.requests
    assert (r.method, r.target, r.version) == (b"PROPFIND", b"/exchange/a%20b/?x=1", b"HTTP/1.1")
    assert r.headers == [(b"Host", b"fe"), (b"Depth", b"1")]
    assert r.header(b"depth") == [b"1"] and r.peer == "192.0.2.7" and not r.secure
    assert r.body.length == 0


def test_response_is_written_and_the_connection_kept_for_the_next_request() -> None:
    c = Conn(answer=ok)
    c.send(b"GET /a HTTP/1.1\r\n" + H + b"\r\nGET /b HTTP/1.1\r\n" + H + b"\r\n")
    assert [r.target for r in c.requests] == [b"/a", b"/b"]
    assert c.out == (b"HTTP/1.1 200 OK\r\nX-A: 1\r\nContent-Length: 2\r\n\r\nhi") * 2
    assert not c.closed


def test_thousands_of_pipelined_requests_answered_at_once_do_not_recurse() -> None:
    c = Conn(answer=ok)
    c.send((b"GET /a HTTP/1.1\r\n" + H + b"\r\n") * 3000)
    assert len(c.requests) == 3000 and c.out.count(b"HTTP/1.1 200 OK") == 3000


def test_pipelined_request_waits_until_the_first_is_answered() -> None:
    c = Conn()
    c.send(b"GET /a HTTP/1.1\r\n" + H + b"\r\nGET /b HTTP/1.1\r\n" + H + b"\r\n")
    assert [r.target for r in c.requests] == [b"/a"]
    ok(c.requests[0])
    assert [r.target for r in c.requests] == [b"/a", b"/b"]


def test_reading_pauses_when_a_busy_connection_buffers_too_much() -> None:
    c = Conn()
    c.send(b"GET /a HTTP/1.1\r\n" + H + b"\r\n")
    c.send(b"x" * (PAUSE_AT + 1))
    assert c.transport.producerState == "paused"
    ok(c.requests[0])
    assert c.transport.producerState == "producing"


def test_connection_close_and_http_1_0_close_after_the_response() -> None:
    for raw in (
        b"GET /a HTTP/1.1\r\n" + H + b"Connection: close\r\n\r\n",
        b"GET /a HTTP/1.0\r\n\r\n",
    ):
        c = Conn(answer=ok)
        c.send(raw)
        assert b"Connection: close\r\n" in c.out and c.closed


@pytest.mark.parametrize("step", [1, 3, 1000])
def test_chunked_body_is_dechunked_however_it_is_split(step: int) -> None:
    c = Conn()
    raw = (
        b"POST /a HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n"
        b"5;ext=1\r\nhello\r\n1\r\n \r\n5\r\nworld\r\n0\r\nX-Trailer: t\r\n\r\n"
    )
    for i in range(0, len(raw), step):
        c.send(raw[i : i + step])
    (r,) = c.requests
    assert r.body.data == b"hello world" and r.body.length == 11


def test_content_length_body_split_in_pieces() -> None:
    c = Conn()
    c.send(b"PUT /a HTTP/1.1\r\n" + H + b"Content-Length: 10\r\n\r\n01234")
    assert c.requests == []
    c.send(b"56789GET /b HTTP/1.1\r\n")
    (r,) = c.requests
    assert r.body.data == b"0123456789"


def test_large_body_is_spooled_to_a_file() -> None:
    c = Conn()
    size = SPOOL + 12345
    c.send(b"PUT /a HTTP/1.1\r\n" + H + b"Content-Length: %d\r\n\r\n" % size)
    for at in range(0, size, 65536):
        c.send(b"z" * min(65536, size - at))
    (r,) = c.requests
    assert r.body.file is not None and r.body.length == size
    assert r.body.file.read() == b"z" * size
    r.abort()
    assert r.body.file.closed


def test_expect_100_continue_is_answered_before_the_body() -> None:
    c = Conn()
    c.send(b"PUT /a HTTP/1.1\r\n" + H + b"Expect: 100-continue\r\nContent-Length: 2\r\n\r\n")
    assert c.out == b"HTTP/1.1 100 Continue\r\n\r\n"
    c.send(b"ab")
    assert c.requests[0].body.data == b"ab"


def test_unknown_length_is_chunked_to_http_1_1_and_close_delimited_to_1_0() -> None:
    def stream(request: Req) -> None:
        request.respond(200, b"OK", [], None)
        request.write(b"abc")
        request.finish()

    c = Conn(answer=stream)
    c.send(b"GET /a HTTP/1.1\r\n" + H + b"\r\n")
    assert c.out.endswith(b"Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n")
    c10 = Conn(answer=stream)
    c10.send(b"GET /a HTTP/1.0\r\n\r\n")
    assert c10.out.endswith(b"Connection: close\r\n\r\nabc") and c10.closed


def test_head_answer_keeps_its_length_and_sends_no_body() -> None:
    c = Conn(answer=lambda r: ok(r, b"x" * 50))
    c.send(b"HEAD /a HTTP/1.1\r\n" + H + b"\r\n")
    assert c.out == b"HTTP/1.1 200 OK\r\nX-A: 1\r\nContent-Length: 50\r\n\r\n"


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        (b"GET /a HTTP/1.1\r\n\r\n", b"400"),  # no Host
        (b"GET /a HTTP/1.1\r\n" + H + H + b"\r\n", b"400"),
        (b"GET /a HTTP/2.0\r\n" + H + b"\r\n", b"505"),
        (b"GET /a FOO\r\n" + H + b"\r\n", b"400"),
        (b"GET  /a HTTP/1.1\r\n" + H + b"\r\n", b"400"),
        (b"G(T /a HTTP/1.1\r\n" + H + b"\r\n", b"400"),
        (b"GET /a\x01 HTTP/1.1\r\n" + H + b"\r\n", b"400"),
        (b"GET /a HTTP/1.1\r\n" + H + b"X: a\x00b\r\n\r\n", b"400"),
        (b"GET /a HTTP/1.1\r\n" + H + b"NoColon\r\n\r\n", b"400"),
        (b"POST /a HTTP/1.1\r\n" + H + b"Content-Length: -1\r\n\r\n", b"400"),
        (b"POST /a HTTP/1.1\r\n" + H + b"Content-Length: 1e3\r\n\r\n", b"400"),
        (b"POST /a HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\nzz\r\n", b"400"),
        (b"POST /a HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n1\r\nabc\r\n", b"400"),
        (b"POST /a HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n1\na\r\n", b"400"),
        (
            b"POST /a HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n0\r\nX: 1\n\r\n",
            b"400",
        ),
        (b"POST /a HTTP/1.1\r\n" + H + b"Content-Length: 2000\r\n\r\n", b"413"),
        (b"GET /a HTTP/1.1\r\n" + H + (b"X-L: " + b"v" * 1000 + b"\r\n") * 70, b"431"),
        (b"GET /" + b"a" * 20000, b"414"),
        (b"GET /a HTTP/1.1\r\nX: " + b"a" * 20000, b"431"),
        (b"GET /a HTTP/1.1\n", b"400"),
    ],
)
def test_malformed_or_oversized_requests_are_answered_and_closed(raw: bytes, status: bytes) -> None:
    c = Conn(ClientLimits(max_body_size=1000))
    c.send(raw)
    assert c.out.startswith(b"HTTP/1.1 " + status), c.out
    assert c.out.count(b"\n") == 6 and b"Connection: close" in c.out
    assert c.closed and c.requests == []


def test_chunked_body_over_the_limit_is_413_while_it_arrives() -> None:
    c = Conn(ClientLimits(max_body_size=1000))
    c.send(b"POST /a HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n")
    c.send(b"200\r\n" + b"x" * 512 + b"\r\n")
    assert c.out == b""
    c.send(b"200\r\n" + b"x" * 489)  # 1001 bytes in all
    assert c.out.startswith(b"HTTP/1.1 413") and c.closed


def test_slow_head_gets_408_after_header_timeout() -> None:
    c = Conn(ClientLimits(header_timeout=2.0, idle_timeout=100.0))
    c.send(b"GET /a HTTP/1.1\r\n")
    c.clock.advance(1.0)
    c.send(b"X: 1\r\n")  # trickling bytes do not extend the deadline
    assert c.out == b""
    c.clock.advance(1.01)
    assert c.out.startswith(b"HTTP/1.1 408") and c.closed


def test_slow_body_gets_408_after_body_timeout() -> None:
    c = Conn(ClientLimits(body_timeout=3.0, idle_timeout=100.0))
    c.send(b"PUT /a HTTP/1.1\r\n" + H + b"Content-Length: 5\r\n\r\nab")
    c.clock.advance(2.9)
    assert c.out == b""
    c.clock.advance(0.2)
    assert c.out.startswith(b"HTTP/1.1 408") and c.closed


def test_idle_connection_is_closed_without_an_answer() -> None:
    c = Conn(ClientLimits(idle_timeout=5.0), answer=ok)
    c.send(b"GET /a HTTP/1.1\r\n" + H + b"\r\n")
    c.transport.clear()
    c.clock.advance(4.9)
    assert not c.closed
    c.clock.advance(0.2)
    assert c.closed and c.out == b""


def test_a_request_being_handled_is_not_cut_by_client_deadlines() -> None:
    c = Conn(ClientLimits(header_timeout=1.0, body_timeout=1.0, idle_timeout=1.0))
    c.send(b"GET /a HTTP/1.1\r\n" + H + b"\r\n")
    c.clock.advance(30)
    assert not c.closed
    ok(c.requests[0])
    assert c.out.startswith(b"HTTP/1.1 200")


def test_connections_over_the_limit_get_503() -> None:
    c = Conn(ClientLimits(max_connections=1))
    second = c.factory.buildProtocol(None)
    t = StringTransport()
    second.makeConnection(t)
    assert t.value().startswith(b"HTTP/1.1 503") and t.disconnecting
    assert len(c.factory.connections) == 2  # until the refused one is gone
    second.connectionLost(Failure(Exception("closed")))
    assert c.factory.connections == {c.proto}


def test_client_going_away_tells_the_handler_once() -> None:
    c = Conn()
    c.send(b"GET /a HTTP/1.1\r\n" + H + b"\r\n")
    events: list[str] = []
    (r,) = c.requests
    r.on_gone = lambda: events.append("gone")
    r.on_end = lambda: events.append("end")
    c.proto.connectionLost(Failure(Exception("reset")))
    r.finish()
    assert events == ["gone", "end"]


def test_close_all_fires_when_connections_are_gone() -> None:
    c = Conn()
    d = c.factory.close_all(2.0)
    fired: list[object] = []
    d.addCallback(fired.append)
    assert c.closed and not fired
    c.proto.connectionLost(Failure(Exception("closed")))
    assert fired == [None]


def test_empty_lines_before_a_request_are_ignored() -> None:
    c = Conn(answer=ok)
    c.send(b"\r\n")
    c.send(b"\r\nGET /a HTTP/1.1\r\n" + H + b"\r\n")
    assert [r.target for r in c.requests] == [b"/a"] and c.out.startswith(b"HTTP/1.1 200")


def test_bare_lf_in_an_unfinished_head_is_refused_at_once() -> None:
    c = Conn()
    c.send(b"GET /a HTTP/1.1\r\nHost: fe\nX: 1")
    assert c.out.startswith(b"HTTP/1.1 400") and c.closed


_PIECES = st.sampled_from(
    [
        b"GET /a HTTP/1.1\r\n",
        b"POST /b HTTP/1.1\r\n",
        b"GET /c HTTP/1.0\r\n",
        b"Host: fe\r\n",
        b"Content-Length: 3\r\n",
        b"Content-Length: 0\r\n",
        b"Transfer-Encoding: chunked\r\n",
        b"Connection: close\r\n",
        b"X: y\r\n",
        b" folded\r\n",
        b"\r\n",
        b"\n",
        b"\r",
        b"abc",
        b"3\r\nxyz\r\n",
        b"0\r\n\r\n",
        b"\x00",
    ]
) | st.binary(max_size=4)


def _feed(pieces: list[bytes]) -> tuple[list[tuple[bytes, bytes, bytes]], bytes, bool]:
    c = Conn(ClientLimits(max_body_size=100), answer=ok)
    for piece in pieces:
        c.send(piece)
    seen = [(r.method, r.target, r.body.data or b"") for r in c.requests]
    return seen, c.out, c.closed


@settings(max_examples=500, deadline=None, derandomize=True)
@given(parts=st.lists(_PIECES, max_size=14), cuts=st.lists(st.integers(0, 200), max_size=6))
def test_any_bytes_in_any_split_are_parsed_alike_or_refused_cleanly(
    parts: list[bytes], cuts: list[int]
) -> None:
    """Whatever arrives, however TCP splits it, the same requests come out,
    and anything refused gets one status line and a closed connection."""
    data = b"".join(parts)
    at = sorted({min(c, len(data)) for c in cuts})
    pieces = [data[i:j] for i, j in zip([0, *at], [*at, len(data)], strict=True)]
    whole = _feed([data])
    split = _feed(pieces)
    assert split == whole
    seen, out, closed = whole
    answers = out.count(b"HTTP/1.1 ")
    assert answers >= len(seen)
    if answers > len(seen):  # a refusal: the last answer, and the connection closed
        last = out.rsplit(b"HTTP/1.1 ", 1)[1]
        assert last[:1] in (b"4", b"5") and closed
