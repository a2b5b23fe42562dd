"""Client connections in memory: heads handed over at once, bodies read when
asked, responses framed, refusals, and every deadline on a Clock.

The same behaviours are checked against a real `feproxy serve` in
test_hostile.py, test_forwarding_real.py and test_differential.py; these are
the fast, exact ones.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from frontend.wire.incoming import IncomingRequest
from frontend.wire.server import PAUSE_AT, ClientLimits
from tests.wire_support import Conn, H, HalfClosingTransport, Sink, ok, read_then_ok

# -- heads, handed over at once


def test_head_and_peer_reach_the_handler_before_any_body_byte_is_read() -> None:
    """The handler gets the request at its head; the body waits, and reading stops."""
    c = Conn()
    c.send(b"PUT /x?q=1 HTTP/1.1\r\n" + H + b"Content-Length: 5\r\n\r\nhel")
    (r,) = c.requests
    assert (r.method, r.target, r.version, r.peer) == (b"PUT", b"/x?q=1", b"HTTP/1.1", "192.0.2.7")
    assert r.header(b"host") == [b"fe"]
    assert r.length == 5
    assert r.has_body
    assert not c.reading
    assert c.proto.body_state == "held"


def test_methods_llhttp_does_not_know_pass_unchanged() -> None:
    """BPROPFIND, X-MS-ENUMATTS, RPC_IN_DATA reach the handler as sent."""
    c = Conn(answer=ok)
    for method in (b"BPROPFIND", b"X-MS-ENUMATTS", b"RPC_IN_DATA", b"POLL", b"SUBSCRIBE"):
        c.send(method + b" /x HTTP/1.1\r\n" + H + b"\r\n")
    assert [r.method for r in c.requests] == [
        b"BPROPFIND",
        b"X-MS-ENUMATTS",
        b"RPC_IN_DATA",
        b"POLL",
        b"SUBSCRIBE",
    ]


def test_response_is_written_and_the_connection_kept_for_the_next_request() -> None:
    """A 1.1 answer leaves the connection open, idle."""
    c = Conn(answer=ok)
    c.send(b"GET /a HTTP/1.1\r\n" + H + b"\r\n")
    assert c.take() == b"HTTP/1.1 200 OK\r\nX-A: 1\r\nContent-Length: 2\r\n\r\nhi"
    assert not c.closed
    assert c.proto.state == "idle"
    assert c.proto.deadline == "idle"


def test_thousands_of_pipelined_requests_answered_at_once_do_not_recurse() -> None:
    """Requests answered synchronously are read in a loop, not by recursion."""
    c = Conn(answer=ok)
    c.send((b"GET /a HTTP/1.1\r\n" + H + b"\r\n") * 3000)
    assert len(c.requests) == 3000
    assert c.out.count(b"HTTP/1.1 200") == 3000


def test_pipelined_request_waits_until_the_first_is_answered() -> None:
    """The second request is read only once the first is over."""
    c = Conn()
    c.send(b"GET /a HTTP/1.1\r\n" + H + b"\r\nGET /b HTTP/1.1\r\n" + H + b"\r\n")
    assert [r.target for r in c.requests] == [b"/a"]
    ok(c.requests[0])
    assert [r.target for r in c.requests] == [b"/a", b"/b"]


def test_reading_pauses_when_a_busy_connection_buffers_too_much() -> None:
    """Past 64 KiB of pipelined bytes, the connection stops reading until the answer."""
    c = Conn()
    c.send(b"GET /a HTTP/1.1\r\n" + H + b"\r\n")
    c.send(b"GET /b HTTP/1.1\r\n" + H + b"X: " + b"y" * PAUSE_AT + b"\r\n")
    assert not c.reading
    ok(c.requests[0])
    assert c.reading


@pytest.mark.parametrize(
    "head",
    [
        b"GET /a HTTP/1.1\r\n" + H + b"Connection: close\r\n\r\n",
        b"GET /a HTTP/1.0\r\n" + H + b"\r\n",
        b"GET /a HTTP/1.0\r\n" + H + b"Connection: keep-alive\r\n\r\n",
    ],
)
def test_connection_close_and_http_1_0_close_after_the_response(head: bytes) -> None:
    """Connection: close and any HTTP/1.0 request: Connection: close, then closed."""
    c = Conn(answer=ok)
    c.send(head)
    assert b"Connection: close\r\n" in c.out
    assert c.closed


# -- bodies, read when asked


def test_content_length_body_is_read_only_when_asked_however_it_arrives() -> None:
    """Bytes of the body stay unread until stream_to; then they come in order."""
    c = Conn()
    c.send(b"POST /a HTTP/1.1\r\n" + H + b"Content-Length: 10\r\n\r\n0123")
    (r,) = c.requests
    sink = Sink()
    r.stream_to(sink)
    assert sink.data == b"0123"
    assert sink.end is None
    assert c.reading
    c.send(b"45")
    c.send(b"6789GET /next HTTP/1.1\r\n" + H + b"\r\n")
    assert sink.data == b"0123456789"
    assert sink.end == (True, "")
    assert len(c.requests) == 1  # the next waits for the answer
    ok(r)
    assert [q.target for q in c.requests] == [b"/a", b"/next"]


@settings(max_examples=200, deadline=None, derandomize=True)
@given(cuts=st.lists(st.integers(0, 80), max_size=8))
def test_chunked_body_is_dechunked_however_it_is_split(cuts: list[int]) -> None:
    """Chunk sizes, extensions and trailers split anywhere give the same body and request."""
    data = (
        b"POST /a HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n"
        b"3;ext=1\r\nabc\r\n10\r\n0123456789abcdef\r\n0\r\nTrailer: v\r\n\r\n"
        b"GET /b HTTP/1.1\r\n" + H + b"\r\n"
    )
    at = sorted({min(i, len(data)) for i in cuts})
    c = Conn(answer=read_then_ok)
    for i, j in zip([0, *at], [*at, len(data)], strict=True):
        c.send(data[i:j])
    assert [r.target for r in c.requests] == [b"/a", b"/b"]
    assert b"abc0123456789abcdef" in c.out


def test_expect_100_continue_is_answered_when_the_body_is_asked_for() -> None:
    """100 Continue goes out when the handler reads the body, not at the head."""
    c = Conn()
    c.send(b"PUT /a HTTP/1.1\r\n" + H + b"Expect: 100-continue\r\nContent-Length: 3\r\n\r\n")
    assert c.out == b""
    c.requests[0].stream_to(Sink())
    assert c.take() == b"HTTP/1.1 100 Continue\r\n\r\n"


def test_request_answered_before_its_body_closes_after_a_lingering_read() -> None:
    """401 at once, Connection: close, write side shut; what the client still
    sends is read and dropped until it is quiet for linger_timeout."""
    c = Conn(ClientLimits(linger_timeout=5.0))
    c.send(b"PUT /a HTTP/1.1\r\n" + H + b"Expect: 100-continue\r\nContent-Length: 999\r\n\r\n")
    r = c.requests[0]
    r.respond(401, b"Unauthorized", [], 0)
    r.finish()
    assert b"100 Continue" not in c.out
    assert b"Connection: close\r\n" in c.out
    assert c.transport.write_closed
    assert not c.closed
    assert c.reading
    assert c.proto.state == "linger"
    assert c.proto.deadline == "linger"
    c.clock.advance(4)
    c.send(b"x" * 500)  # dropped, and the silence counts again
    c.clock.advance(4)
    assert not c.closed
    c.clock.advance(1.5)
    assert c.closed
    assert len(c.requests) == 1


def test_lingering_ends_after_linger_time_however_busy_the_client() -> None:
    """A client that keeps sending is cut off after linger_time in all."""
    c = Conn(ClientLimits(linger_timeout=5.0, linger_time=12.0))
    c.send(b"PUT /a HTTP/1.1\r\n" + H + b"Content-Length: 99999\r\n\r\n")
    ok(c.requests[0])
    for _ in range(3):
        c.clock.advance(4)
        c.send(b"x" * 100)
    assert c.closed


def test_declared_body_over_the_limit_is_413_before_the_handler_sees_it() -> None:
    """A Content-Length over max_body_size: 413 at once, nothing handed over."""
    c = Conn(ClientLimits(max_body_size=1000))
    c.send(b"PUT /a HTTP/1.1\r\n" + H + b"Content-Length: 1001\r\n\r\n")
    assert c.out.startswith(b"HTTP/1.1 413")
    assert not c.requests
    assert c.transport.write_closed


def test_chunked_body_over_the_limit_is_413_while_it_arrives() -> None:
    """A chunked body that grows past max_body_size is refused as it arrives."""
    c = Conn(ClientLimits(max_body_size=10))
    c.send(b"PUT /a HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n8\r\n12345678\r\n")
    sink = Sink()
    c.requests[0].stream_to(sink)
    c.send(b"8\r\n12345678\r\n")
    assert c.out.startswith(b"HTTP/1.1 413")
    assert sink.end is not None
    assert not sink.end[0]
    assert c.gone == c.requests  # the handler was told first


def test_broken_chunked_framing_mid_body_is_400_and_the_sink_learns() -> None:
    """A bad chunk size after part of the body went on: 400, the body ends incomplete."""
    c = Conn()
    c.send(b"PUT /a HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n")
    sink = Sink()
    c.requests[0].stream_to(sink)
    c.send(b" 4\r\nabcd\r\n")
    assert sink.data == b"abc"
    assert sink.end is not None
    assert not sink.end[0]
    assert c.out.startswith(b"HTTP/1.1 400")


def test_back_end_flow_control_pauses_and_resumes_the_client() -> None:
    """pause() stops reading the client; resume() delivers what was buffered."""
    c = Conn()
    c.send(b"PUT /a HTTP/1.1\r\n" + H + b"Content-Length: 6\r\n\r\n")
    r = c.requests[0]
    sink = Sink()
    r.stream_to(sink)
    r.pause()
    assert not c.reading
    c.send(b"abc")
    assert sink.data == b""
    r.resume()
    assert sink.data == b"abc"
    assert c.reading


# -- responses


def test_unknown_length_is_chunked_to_http_1_1_and_close_delimited_to_1_0() -> None:
    """Without a length: chunked for 1.1; for 1.0 the close ends the body."""
    for version, framed in ((b"1.1", b"2\r\nhi\r\n0\r\n\r\n"), (b"1.0", b"hi")):
        c = Conn()
        c.send(b"GET /a HTTP/" + version + b"\r\n" + H + b"\r\n")
        r = c.requests[0]
        r.respond(200, b"OK", [], None)
        r.write(b"hi")
        r.finish()
        assert c.out.endswith(framed)


def test_head_answer_keeps_its_length_and_sends_no_body() -> None:
    """HEAD: Content-Length as given, no body bytes."""
    c = Conn()
    c.send(b"HEAD /a HTTP/1.1\r\n" + H + b"\r\n")
    r = c.requests[0]
    r.respond(200, b"OK", [], 12)
    r.write(b"ignored body")
    r.finish()
    assert c.out == b"HTTP/1.1 200 OK\r\nContent-Length: 12\r\n\r\n"


# -- refusals


@pytest.mark.parametrize(
    ("data", "status"),
    [
        (b"GET /a HTTP/1.1\r\n\r\n", b"400"),  # no Host
        (b"GET /a HTTP/1.1\r\n" + H + H + b"\r\n", b"400"),  # two Host
        (b"GET /a HTTP/1.1\r\nHost: a b/../\r\n\r\n", b"400"),
        (b"GET  /a HTTP/1.1\r\n" + H + b"\r\n", b"400"),
        (b"GET /a#f HTTP/1.1\r\n" + H + b"\r\n", b"400"),
        (b"GET /a?\t/b HTTP/1.1\r\n" + H + b"\r\n", b"400"),
        (b"GET http://x/a HTTP/1.1\r\n" + H + b"\r\n", b"400"),
        (b"GET /a HTTP/1.1\r\n" + H + b"Connection: host\r\n\r\n", b"400"),
        (b"GET /a HTTP/1.1\r\n" + H + b"Content_Length: 3\r\n\r\n", b"400"),
        (b"POST /a HTTP/1.0\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n", b"400"),
        (b"POST /a HTTP/1.1\r\n" + H + b"Content-Length: 3\r\nContent-Length: 3\r\n\r\n", b"400"),
        (b"GET /a HTTP/1.1\r\n" + H + b"Expect: x\r\n\r\n", b"417"),
        (b"GET /a HTTP/2.0\r\n" + H + b"\r\n", b"505"),
        (b"GET /" + b"a" * 17000 + b" HTTP/1.1\r\n" + H + b"\r\n", b"414"),
        (b"GET /a HTTP/1.1\r\n" + H + b"X: " + b"y" * 17000 + b"\r\n\r\n", b"431"),
        (b"GET /a HTTP/1.1\r\n" + H + b"X: y\r\n" * 101 + b"\r\n", b"431"),
    ],
)
def test_malformed_or_oversized_requests_are_answered_and_closed(
    data: bytes, status: bytes
) -> None:
    """Each refusal: one status line with a one-line body, nothing handed over, closed."""
    c = Conn(answer=ok)
    c.send(data)
    assert c.out.startswith(b"HTTP/1.1 " + status)
    assert not c.requests
    assert b"Connection: close\r\n" in c.out
    assert c.transport.write_closed


def test_bare_lf_in_an_unfinished_head_is_refused_at_once() -> None:
    """A bare LF is refused before the head is complete."""
    c = Conn()
    c.send(b"GET /a HTTP/1.1\nHost")
    assert c.out.startswith(b"HTTP/1.1 400")


def test_connections_over_the_limit_get_503() -> None:
    """The connection past max_connections is answered 503 and closed."""
    c = Conn(ClientLimits(max_connections=1))
    second = c.factory.buildProtocol(None)
    transport = HalfClosingTransport()
    second.makeConnection(transport)
    assert transport.value().startswith(b"HTTP/1.1 503")
    assert transport.disconnecting
    assert not c.closed


# -- deadlines


def test_slow_head_gets_408_after_header_timeout_from_its_first_byte() -> None:
    """More bytes of an unfinished head do not move its deadline."""
    c = Conn(ClientLimits(header_timeout=2.0, idle_timeout=100.0))
    c.send(b"GET /a HTTP/1.1\r\n")
    c.clock.advance(1.5)
    c.send(H)
    c.clock.advance(0.6)
    assert c.out.startswith(b"HTTP/1.1 408")


def test_slow_body_gets_408_after_body_timeout_of_silence() -> None:
    """The body deadline counts silence: each byte moves it."""
    c = Conn(ClientLimits(body_timeout=3.0))
    c.send(b"PUT /a HTTP/1.1\r\n" + H + b"Content-Length: 10\r\n\r\n")
    sink = Sink()
    c.requests[0].stream_to(sink)
    for _ in range(3):
        c.clock.advance(2)
        c.send(b"x")
    assert c.out == b""
    c.clock.advance(3)
    assert c.out.startswith(b"HTTP/1.1 408")
    assert sink.end == (False, "no body bytes for 3.0s")


def test_idle_connection_is_closed_quietly_and_empty_lines_do_not_keep_it() -> None:
    """idle_timeout closes an idle connection; trickled empty lines do not extend it."""
    c = Conn(ClientLimits(idle_timeout=10.0))
    for _ in range(4):
        c.clock.advance(3)
        c.send(b"\r\n")
    assert c.closed
    assert c.out == b""


def test_request_followed_by_an_empty_line_leaves_an_armed_idle_deadline() -> None:
    """GET, then an empty line in the same packet: answered, then idle under its deadline."""
    c = Conn(ClientLimits(idle_timeout=60.0), answer=ok)
    c.send(b"GET /a HTTP/1.1\r\n" + H + b"\r\n\r\n")
    assert c.proto.state == "idle"
    assert c.proto.deadline == "idle"
    c.clock.advance(60)
    assert c.closed


def test_unanswered_request_gets_504_after_answer_timeout_and_the_handler_lets_go() -> None:
    """A request the handler never answers: the handler is told, the client gets 504."""
    c = Conn(ClientLimits(answer_timeout=30.0))
    c.send(b"GET /a HTTP/1.1\r\n" + H + b"\r\n")
    c.clock.advance(29)
    assert c.out == b""
    c.clock.advance(1)
    assert c.gone == c.requests
    assert c.out.startswith(b"HTTP/1.1 504")


def test_a_slow_reader_loses_its_connection_after_send_timeout() -> None:
    """A client that reads nothing for send_timeout: the connection is aborted,
    the handler told, the producer stopped."""

    class Producer:
        stopped = paused = False

        def pauseProducing(self) -> None:
            self.paused = True

        def resumeProducing(self) -> None:
            self.paused = False

        def stopProducing(self) -> None:
            self.stopped = True

    c = Conn(ClientLimits(send_timeout=60.0))
    c.send(b"GET /big HTTP/1.1\r\n" + H + b"\r\n")
    r = c.requests[0]
    producer = Producer()
    r.respond(200, b"OK", [], None)
    r.register_producer(producer)
    r.write(b"x" * 1000)
    c.proto.pauseProducing()  # what the transport does when the client stops reading
    assert producer.paused
    assert c.proto.deadline == "send"
    c.clock.advance(59)
    c.proto.resumeProducing()
    c.proto.pauseProducing()  # a new pause starts the count again
    c.clock.advance(59)
    assert not c.transport.disconnected
    c.clock.advance(1)
    assert c.transport.disconnected
    assert c.gone == [r]


def test_client_going_away_tells_the_handler_and_the_body_sink_once() -> None:
    """connectionLost: the body ends incomplete, on_gone is called once."""
    c = Conn()
    c.send(b"PUT /a HTTP/1.1\r\n" + H + b"Content-Length: 10\r\n\r\nab")
    sink = Sink()
    c.requests[0].stream_to(sink)
    c.lose()
    c.lose()
    assert sink.end == (False, "the client went away")
    assert c.gone == c.requests


def test_close_all_fires_when_connections_are_gone() -> None:
    """close_all closes every connection and fires once they are gone."""
    c = Conn()
    fired: list[object] = []
    c.factory.close_all(5).addCallback(fired.append)
    assert c.closed
    assert not fired
    c.lose()
    assert fired == [None]


# -- the deadline is never lost: a walk over every transition

_EVENTS = st.sampled_from(
    [
        "head-part",
        "head-get",
        "head-put",
        "head-put-expect",
        "body-bytes",
        "body-rest",
        "read-body",
        "pause-body",
        "resume-body",
        "respond",
        "write",
        "client-pauses",
        "client-resumes",
        "finish",
        "cut",
        "refuse-401",
        "empty-line",
        "garbage",
        "advance-1",
        "advance-100",
        "lose",
    ]
)


# What each event of the client sends, and how far each moves the clock.
_SENDS = {
    "head-part": b"GET /a HT",
    "head-get": b"GET /a HTTP/1.1\r\n" + H + b"\r\n",
    "head-put": b"PUT /a HTTP/1.1\r\n" + H + b"Content-Length: 6\r\n\r\n",
    "head-put-expect": (
        b"PUT /a HTTP/1.1\r\n" + H + b"Expect: 100-continue\r\nContent-Length: 6\r\n\r\n"
    ),
    "body-bytes": b"abc",
    "body-rest": b"abcdef",
    "empty-line": b"\r\n",
    "garbage": b"\x00\x01",
}
_ADVANCES = {"advance-1": 1, "advance-100": 100}


def _step(c: Conn, event: str) -> None:
    """One event: the client sends, time passes, the client goes away, or the
    handler acts on the last request (if it is live and the event applies)."""
    if event in _SENDS:
        c.send(_SENDS[event])
    elif event in _ADVANCES:
        c.clock.advance(_ADVANCES[event])
    elif event == "lose":
        c.lose()
    elif c.requests and not c.requests[-1].done:
        _handler_step(c, c.requests[-1], event)


def _handler_step(c: Conn, r: IncomingRequest, event: str) -> None:
    match event:
        case "read-body" if c.proto.body_state == "held":
            r.stream_to(Sink())
        case "pause-body":
            r.pause()
        case "resume-body":
            r.resume()
        case "respond" if not r.started:
            r.respond(200, b"OK", [], None)
        case "write" if r.started:
            r.write(b"x")
        case "client-pauses" if r.started:
            c.proto.pauseProducing()
        case "client-resumes" if r.started:
            c.proto.resumeProducing()
        case "finish" if r.started:
            r.finish()
        case "cut" if r.started:
            r.cut()
        case "refuse-401" if not r.started:
            r.respond(401, b"Unauthorized", [], 0)
            r.finish()


_EXPECTED = {
    "idle": {"idle"},
    "head": {"head"},
    "active": {"answer", "body", "send"},
    "linger": {"linger"},
}


@settings(max_examples=600, deadline=None, derandomize=True)
@given(events=st.lists(_EVENTS, max_size=30))
def test_every_state_has_exactly_its_deadline_armed(events: list[str]) -> None:
    """Through any sequence of events, a connection that is not closed always
    has one deadline armed, the one of the state it is in."""
    c = Conn(ClientLimits(idle_timeout=50, header_timeout=10, body_timeout=20))
    for event in events:
        _step(c, event)
        state = c.proto.state
        if state == "closed" or c.closed:
            break
        assert c.proto.deadline in _EXPECTED[state], (event, state, c.proto.deadline)
        if state == "active":
            body = c.proto.body_state
            want = "body" if body == "reading" else "answer"
            assert c.proto.deadline in (want, "send")


def test_walk_through_every_state_names_each_deadline() -> None:
    """One scripted walk: idle, head, answer, body, answer (paused by the back
    end), send, answer, idle, linger; each with its own deadline."""
    c = Conn()
    seen = [c.proto.deadline]
    c.send(b"PUT /a HTTP/1.1\r\n")
    seen.append(c.proto.deadline)
    c.send(H + b"Content-Length: 6\r\n\r\n")
    seen.append(c.proto.deadline)
    r = c.requests[0]
    r.stream_to(Sink())
    seen.append(c.proto.deadline)
    r.pause()
    seen.append(c.proto.deadline)
    r.resume()
    c.send(b"abcdef")
    r.respond(200, b"OK", [], None)
    r.write(b"x")
    c.proto.pauseProducing()
    seen.append(c.proto.deadline)
    c.proto.resumeProducing()
    seen.append(c.proto.deadline)
    r.finish()
    seen.append(c.proto.deadline)
    c.send(b"PUT /b HTTP/1.1\r\n" + H + b"Content-Length: 6\r\n\r\n")
    ok(c.requests[1])
    seen.append(c.proto.deadline)
    assert seen == ["idle", "head", "answer", "body", "answer", "send", "answer", "idle", "linger"]


# -- any bytes, any split

_PIECES = st.sampled_from(
    [
        b"GET /a HTTP/1.1\r\n",
        b"POST /b HTTP/1.1\r\n",
        b"BPROPFIND /c HTTP/1.1\r\n",
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


def _feed(pieces: list[bytes]) -> tuple[list[tuple[bytes, bytes]], bytes, bool]:
    c = Conn(ClientLimits(max_body_size=100), answer=read_then_ok)
    for piece in pieces:
        c.send(piece)
    seen = [(r.method, r.target) for r in c.requests]
    return seen, c.out, c.closed or c.proto.state == "linger"


@settings(max_examples=500, deadline=None, derandomize=True)
@given(parts=st.lists(_PIECES, max_size=14), cuts=st.lists(st.integers(0, 200), max_size=6))
def test_any_bytes_in_any_split_are_parsed_alike_or_refused_cleanly(
    parts: list[bytes], cuts: list[int]
) -> None:
    """Whatever arrives, however TCP splits it, the same requests and answers
    come out, and anything refused gets one status line and a closing connection."""
    data = b"".join(parts)
    at = sorted({min(c, len(data)) for c in cuts})
    pieces = [data[i:j] for i, j in zip([0, *at], [*at, len(data)], strict=True)]
    whole = _feed([data])
    split = _feed(pieces)
    assert split == whole
    seen, out, closing = whole
    answers = out.count(b"HTTP/1.1 ")
    assert answers >= len(seen)
    if answers > len(seen):  # a refusal: the last answer, and the connection closing
        last = out.rsplit(b"HTTP/1.1 ", 1)[1]
        assert last[:1] in (b"4", b"5")
        assert closing
