"""The back-end client in memory: request bodies streamed from a BodySource,
flow control while they go, Expect: 100-continue, and the deadlines of a
request's sending side."""

from __future__ import annotations

from twisted.internet.defer import CancelledError

from frontend.errors import BackendFailed, GatewayTimeout
from frontend.wire.backend import CONTINUE_WAIT
from frontend.wire.relay import Drain
from tests.backend_doubles import Net, Sink, Source, response

CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


# -- framing and streaming ---------------------------------------------------------------


def test_body_of_unknown_length_is_sent_chunked() -> None:
    """A body without a length goes chunked, empty pieces skipped; the connection is reused."""
    net = Net()
    source = Source(None, [b"abc", b"", b"defghijklmnopqr"])
    out = net.send(b"POST", b"/c", [(b"Host", b"b1")], source)
    peer = net.accept()
    assert peer.take() == (
        b"POST /c HTTP/1.1\r\nHost: b1\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"3\r\nabc\r\nf\r\ndefghijklmnopqr\r\n0\r\n\r\n"
    )
    peer.send(response(b"ok"))
    out.exchange().deliver_body(Sink())
    assert net.up.idle_count("b1") == 1
    net.send()
    assert peer.take() == b"GET / HTTP/1.1\r\n\r\n"


def test_empty_chunked_body_is_the_last_chunk_alone() -> None:
    """A source of unknown length that gives nothing sends only the last chunk."""
    net = Net()
    net.send(b"PUT", body=Source(None))
    assert net.accept().received.endswith(b"chunked\r\n\r\n0\r\n\r\n")


def test_body_goes_as_the_source_gives_it() -> None:
    """The body goes at the source's pace, untimed; the head's deadline runs from its end."""
    net = Net(response_timeout=5.0)
    source = Source(9, ends=False)
    out = net.send(b"PUT", b"/f", body=source)
    peer = net.accept()
    assert peer.take() == b"PUT /f HTTP/1.1\r\nContent-Length: 9\r\n\r\n"
    for piece in (b"abc", b"def", b"ghi"):
        net.advance(20.0)
        source.give(piece)
        assert peer.take() == piece
    assert not out.fired
    source.finish()
    net.advance(4.99)
    assert not out.fired
    net.advance(0.01)
    assert isinstance(out.error(), GatewayTimeout)


def test_source_is_not_touched_before_the_connection_is_made() -> None:
    """The body is not read before a connection takes it: a refused connect leaves it whole."""
    net = Net()
    source = Source.of(b"body")
    out = net.send(b"PUT", body=source)
    assert source.streams == 0
    net.refuse()
    assert out.fired
    assert source.streams == 0
    assert source.given == 0


def test_request_with_a_body_then_a_get_share_the_connection() -> None:
    """After a whole body and a whole answer the connection is pooled."""
    net = Net()
    out = net.send(b"POST", body=Source.of(b"x" * 1000))
    peer = net.accept()
    peer.send(response(b"ok"))
    out.exchange().deliver_body(Sink())
    assert net.up.idle_count("b1") == 1
    net.send()
    assert net.waiting == 0
    assert peer.take().endswith(b"GET / HTTP/1.1\r\n\r\n")


# -- flow control while the body goes -----------------------------------------------------


def test_back_end_pushing_back_pauses_and_resumes_the_source() -> None:
    """The transport pausing and resuming the body's writer pauses and resumes the source."""
    net = Net()
    source = Source(6, [b"ab"], ends=False)
    net.send(b"PUT", body=source)
    peer = net.accept()
    assert peer.producer is not None
    assert peer.transport.streaming is True
    peer.producer.pauseProducing()
    assert source.paused
    assert source.pauses == 1
    source.give(b"cd")  # held by the paused source
    assert not peer.received.endswith(b"cd")
    peer.producer.resumeProducing()
    assert not source.paused
    assert source.resumes == 1
    assert peer.received.endswith(b"abcd")
    source.give(b"ef")
    source.finish()
    assert peer.received.endswith(b"abcdef")
    assert peer.producer is None


def test_write_blocked_too_long_fails_with_gateway_timeout() -> None:
    """A back end taking no body for response_timeout: GatewayTimeout, connection aborted."""
    net = Net(response_timeout=5.0)
    source = Source(100, [b"x" * 10], ends=False)
    out = net.send(b"PUT", body=source)
    peer = net.accept()
    assert peer.producer is not None
    peer.producer.pauseProducing()
    net.advance(4.99)
    assert not out.fired
    net.advance(0.01)
    error = out.error()
    assert isinstance(error, GatewayTimeout)
    assert peer.aborted
    assert peer.received.endswith(b"x" * 10)
    written = peer.received
    net.advance(0)
    source.resume()
    source.give(b"y" * 90)
    source.finish()
    assert peer.received == written


def test_write_unblocked_in_time_clears_the_deadline() -> None:
    """A back end that takes the body again in time: no deadline while the body goes on."""
    net = Net(response_timeout=5.0)
    source = Source(4, [b"ab"], ends=False)
    out = net.send(b"PUT", body=source)
    peer = net.accept()
    assert peer.producer is not None
    peer.producer.pauseProducing()
    net.advance(4.0)
    peer.producer.resumeProducing()
    net.advance(60.0)
    assert not out.fired
    assert not peer.closed
    source.give(b"cd")
    source.finish()
    peer.send(response())
    assert out.exchange().code == 200


def test_source_breaking_off_before_the_head_fails_the_request() -> None:
    """A body that breaks off before the head: BackendFailed, connection aborted."""
    net = Net()
    source = Source(10, [b"abc"], ends=False)
    out = net.send(b"PUT", body=source)
    peer = net.accept()
    source.finish("client went away")
    error = out.error()
    assert isinstance(error, BackendFailed)
    assert error.detail == "b1: the request body broke off (client went away)"
    assert peer.aborted
    assert net.up.idle_count("b1") == 0


def test_source_breaking_off_after_the_head_cuts_the_response_body() -> None:
    """A body that breaks off after an early head: the response body ends incomplete."""
    net = Net()
    source = Source(10, [b"abc"], ends=False)
    out = net.send(b"PUT", body=source)
    peer = net.accept()
    peer.send(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nrespo")
    ex, sink = out.exchange(), Sink()
    ex.deliver_body(sink)
    source.finish("client went away")
    assert sink.body == b"respo"
    assert sink.result == (False, "the request body broke off (client went away)")
    assert peer.aborted


def test_early_final_answer_stops_the_body_and_closes_the_connection() -> None:
    """A whole answer before the whole body stops the body; the connection is closed."""
    net = Net()
    source = Source(100, [b"x" * 10], ends=False)
    out = net.send(b"PUT", body=source)
    peer = net.accept()
    peer.send(b"HTTP/1.1 413 Too Large\r\nContent-Length: 3\r\n\r\nbig")
    ex, sink = out.exchange(), Sink()
    ex.deliver_body(sink)
    assert ex.code == 413
    assert ex.body_sent
    assert sink.result == (True, "")
    written = peer.received
    source.give(b"y" * 90)
    source.finish()
    assert peer.received == written
    assert peer.producer is None
    assert peer.closed
    assert not peer.aborted
    assert net.up.idle_count("b1") == 0


def test_cancel_while_the_body_goes_aborts_the_connection() -> None:
    """Cancelling mid-body fails with CancelledError; nothing more is written."""
    net = Net()
    source = Source(100, [b"x" * 10], ends=False)
    out = net.send(b"PUT", body=source)
    peer = net.accept()
    out.d.cancel()
    assert isinstance(out.error(), CancelledError)
    assert peer.aborted
    written = peer.received
    source.give(b"y" * 90)
    assert peer.received == written


def test_connection_lost_while_the_body_goes_fails_the_request() -> None:
    """A back end that goes away mid-body: BackendFailed (the body is not resent)."""
    net = Net()
    source = Source(100, [b"x" * 10], ends=False)
    out = net.send(b"PUT", body=source)
    peer = net.accept()
    peer.close()
    assert isinstance(out.error(), BackendFailed)
    assert net.waiting == 0
    source.give(b"y" * 90)  # the writer was stopped with the connection
    assert source.streams == 1


# -- Expect: 100-continue ---------------------------------------------------------------------


def test_continue_wait_is_one_second() -> None:
    """Clients wait a second for 100 Continue; so does the front end."""
    assert CONTINUE_WAIT == 1.0


def test_expect_continue_sends_the_head_alone_until_100() -> None:
    """With Expect: 100-continue the body waits for 100 Continue, then streams."""
    net = Net()
    source = Source.of(b"the body")
    out = net.send(b"PUT", b"/pf", [(b"Host", b"b1")], source, expect_continue=True)
    peer = net.accept()
    assert peer.take() == (
        b"PUT /pf HTTP/1.1\r\nHost: b1\r\nContent-Length: 8\r\nExpect: 100-continue\r\n\r\n"
    )
    assert source.streams == 0
    peer.send(CONTINUE[:10], CONTINUE[10:])
    assert source.streams == 1
    assert peer.take() == b"the body"
    assert not out.fired
    peer.send(b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n")
    ex = out.exchange()
    assert ex.code == 201
    assert ex.body_sent
    ex.deliver_body(Sink())
    assert net.up.idle_count("b1") == 1


def test_expect_continue_with_a_chunked_body() -> None:
    """A body of unknown length asks for 100 Continue too, and goes chunked."""
    net = Net()
    source = Source(None, [b"abc"])
    net.send(b"POST", body=source, expect_continue=True)
    peer = net.accept()
    assert peer.take().endswith(b"Transfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n")
    peer.send(CONTINUE)
    assert peer.take() == b"3\r\nabc\r\n0\r\n\r\n"


def test_expect_continue_without_a_body_asks_nothing() -> None:
    """A request without a body has nothing to wait for: no Expect header."""
    net = Net()
    net.send(b"GET", expect_continue=True)
    assert net.accept().received == b"GET / HTTP/1.1\r\n\r\n"


def test_final_answer_before_100_leaves_the_body_untouched() -> None:
    """A 421 before 100 Continue leaves the body untouched; the connection is not pooled."""
    net = Net()
    source = Source.of(b"the body")
    out = net.send(b"PROPPATCH", b"/public/x", body=source, expect_continue=True)
    peer = net.accept()
    peer.take()
    peer.send(b"HTTP/1.1 421 Misdirected\r\nX-Replica-Servers: b2\r\nContent-Length: 4\r\n\r\nre")
    ex = out.exchange()
    assert ex.code == 421
    assert not ex.body_sent
    assert source.streams == 0
    net.advance(CONTINUE_WAIT)  # the wait is over with the answer
    assert source.streams == 0
    assert peer.received == b""
    ex.deliver_body(Drain())
    peer.send(b"fd")
    assert source.streams == 0
    assert not ex.body_sent
    assert peer.closed
    assert not peer.aborted
    assert net.up.idle_count("b1") == 0


def test_final_answer_right_after_100_in_one_read_leaves_the_body_unsent() -> None:
    """100 and a final answer in one read: the body stays unsent, the connection unpooled."""
    net = Net()
    source = Source.of(b"the body")
    out = net.send(b"PUT", body=source, expect_continue=True)
    peer = net.accept()
    peer.take()
    peer.send(CONTINUE + response(b"no"))
    ex = out.exchange()
    ex.deliver_body(Sink())
    assert ex.code == 200
    assert not ex.body_sent
    assert source.streams == 0
    assert peer.received == b""
    assert net.up.idle_count("b1") == 0


def test_no_100_within_the_wait_sends_the_body_anyway() -> None:
    """No answer within CONTINUE_WAIT: the body goes as if 100 had come."""
    net = Net(response_timeout=5.0)
    source = Source.of(b"the body")
    out = net.send(b"PUT", body=source, expect_continue=True)
    peer = net.accept()
    peer.take()
    net.advance(CONTINUE_WAIT - 0.01)
    assert source.streams == 0
    net.advance(0.01)
    assert source.streams == 1
    assert peer.take() == b"the body"
    net.advance(4.99)  # the head is awaited from the body's end
    assert not out.fired
    net.advance(0.01)
    assert isinstance(out.error(), GatewayTimeout)


def test_late_100_after_the_wait_is_skipped() -> None:
    """A 100 Continue after the body went anyway is read past; the body goes once."""
    net = Net()
    source = Source.of(b"the body")
    out = net.send(b"PUT", body=source, expect_continue=True)
    peer = net.accept()
    peer.take()
    net.advance(CONTINUE_WAIT)
    peer.send(CONTINUE)
    peer.send(response(b"done"))
    ex, sink = out.exchange(), Sink()
    ex.deliver_body(sink)
    assert peer.take() == b"the body"
    assert source.streams == 1
    assert sink.body == b"done"
    assert net.up.idle_count("b1") == 1


def test_expect_continue_on_a_pooled_connection_waits_one_second_only() -> None:
    """On a pooled connection (idle timer far off) the wait for 100 is one second too."""
    net = Net(idle_timeout=300.0)
    out = net.send()
    peer = net.accept()
    peer.send(response())
    out.exchange().deliver_body(Sink())
    peer.take()
    source = Source.of(b"body")
    net.send(b"PUT", body=source, expect_continue=True)
    net.advance(CONTINUE_WAIT)
    assert source.streams == 1
    assert peer.take().endswith(b"body")


def test_100_continue_clears_the_wait() -> None:
    """After 100 Continue the one-second timer does nothing more."""
    net = Net()
    source = Source(6, [b"abc"], ends=False)
    out = net.send(b"PUT", body=source, expect_continue=True)
    peer = net.accept()
    peer.take()
    peer.send(CONTINUE)
    net.advance(CONTINUE_WAIT * 10)
    assert source.streams == 1
    assert peer.take() == b"abc"
    assert not out.fired
    source.give(b"def")
    source.finish()
    assert peer.take() == b"def"
