"""The back-end client in memory: connecting, failures and deadlines, stale
pooled connections, flow control while a body is read, and the pool."""

from __future__ import annotations

import pytest
from twisted.internet.defer import CancelledError
from twisted.internet.error import (
    ConnectionRefusedError,
    DNSLookupError,
    TCPTimedOutError,
)

from frontend.errors import BackendFailed, GatewayTimeout
from frontend.wire.relay import Drain
from tests.backend_doubles import Net, Sink, Source, fetch, response

# -- connecting --------------------------------------------------------------------------


def test_connection_refused_fails_with_twisteds_error() -> None:
    """A refused connect fails with ConnectionRefusedError (the caller may try elsewhere)."""
    net = Net()
    out = net.send()
    net.refuse()
    assert isinstance(out.error(), ConnectionRefusedError)
    assert net.up.connections_made == 0


def test_connect_timeout_fails_with_twisteds_error() -> None:
    """A connect the reactor gives up on fails with its error, untouched."""
    net = Net()
    source = Source.of(b"body")
    out = net.send(b"PUT", body=source)
    net.refuse(TCPTimedOutError())
    assert isinstance(out.error(), TCPTimedOutError)
    assert source.streams == 0


def test_names_without_a_hosts_entry_are_resolved() -> None:
    """A name not in [hosts] is resolved; an unknown one fails with DNSLookupError."""
    net = Net(names={"mail7.example.com": "10.1.2.3"})
    out = net.send(server="Mail7.Example.COM")
    net.advance(0)
    assert net.names.asked == ["mail7.example.com"]
    assert net.attempts[0][:2] == ("10.1.2.3", 8080)
    peer = net.accept()
    peer.send(response())
    assert out.exchange().code == 200
    assert net.up.idle_count("MAIL7.example.com") == 1
    missing = net.send(server="nothing.invalid")
    net.advance(0)
    assert isinstance(missing.error(), DNSLookupError)


def test_address_literals_are_connected_directly() -> None:
    """IPv4 and IPv6 literals (as names or [hosts] values) are not resolved."""
    net = Net(hosts={"v6": "fd00::5"})
    net.send(server="192.0.2.9")
    net.send(server="v6")
    assert [a[:2] for a in net.attempts] == [("192.0.2.9", 8080), ("fd00::5", 8080)]
    assert net.names.asked == []


def test_name_that_is_not_a_host_name_fails_with_dnslookuperror() -> None:
    """A name IDNA cannot encode fails at once, without a connect attempt."""
    net = Net()
    out = net.send(server="a..b")
    assert isinstance(out.error(), DNSLookupError)
    assert net.attempts == []


def test_cancel_while_connecting_stops_the_attempt() -> None:
    """Cancelling while connecting: CancelledError, and the connect attempt is stopped."""
    net = Net()
    out = net.send()
    out.d.cancel()
    assert isinstance(out.error(), CancelledError)
    assert net.reactor.connectors[0].stoppedConnecting
    assert net.up.connections_made == 0


# -- failures before and during the response --------------------------------------------


def test_no_answer_in_time_fails_with_gateway_timeout() -> None:
    """No head within response_timeout: GatewayTimeout (not before), connection aborted."""
    net = Net(response_timeout=5.0)
    out = net.send()
    peer = net.accept()
    net.advance(4.99)
    assert not out.fired
    net.advance(0.01)
    error = out.error()
    assert isinstance(error, GatewayTimeout)
    assert error.status == 504
    assert error.detail == "b1: no response in 5.0s"
    assert peer.aborted


def test_head_arriving_slowly_is_timed_from_the_request() -> None:
    """Bytes of an unfinished head do not move the deadline: it is the head's."""
    net = Net(response_timeout=5.0)
    out = net.send()
    peer = net.accept()
    for piece in (b"HTTP/1.1 200 OK\r\n", b"X: 1\r\n", b"Y: 2\r\n", b"Z: 3\r\n"):
        net.advance(1.5)
        peer.send(piece)
    assert isinstance(out.error(), GatewayTimeout)


def test_connection_lost_before_the_head_fails_with_backend_failed() -> None:
    """A fresh connection closed before the head is complete: BackendFailed, no retry."""
    net = Net()
    out = net.send()
    peer = net.accept()
    peer.send(b"HTTP/1.1 200 OK\r\nContent-")
    peer.close()
    error = out.error()
    assert isinstance(error, BackendFailed)
    assert "connection lost before the head" in error.detail
    assert len(net.attempts) == 1


@pytest.mark.parametrize("method", [b"GET", b"HEAD", b"OPTIONS", b"TRACE"])
def test_stale_pooled_connection_is_retried_once_without_body(method: bytes) -> None:
    """A body-less GET/HEAD/OPTIONS/TRACE on a dead pooled connection is sent again."""
    net = Net()
    fetch(net, response(b"first"))
    stale = net.peers[0]
    stale.take()
    out = net.send(method, b"/again")
    assert stale.take() == method + b" /again HTTP/1.1\r\n\r\n"
    stale.close()
    assert not out.fired
    assert net.waiting == 1
    fresh = net.accept()
    assert fresh.received == method + b" /again HTTP/1.1\r\n\r\n"
    fresh.send(response(b""))
    assert out.exchange().code == 200
    assert net.up.connections_made == 2


def test_stale_retry_happens_once_only() -> None:
    """When the new connection dies unanswered too, the request fails."""
    net = Net()
    fetch(net, response())
    out = net.send()
    net.peers[0].close()
    net.accept().close()
    assert isinstance(out.error(), BackendFailed)
    assert net.waiting == 0


def test_cancel_while_the_retry_connects_stops_it() -> None:
    """Cancelling while a stale connection is replaced stops the new connect attempt."""
    net = Net()
    fetch(net, response())
    out = net.send()
    net.peers[0].close()
    assert net.waiting == 1
    out.d.cancel()
    assert isinstance(out.error(), CancelledError)
    assert net.reactor.connectors[1].stoppedConnecting


def test_pooled_connection_that_answered_in_part_is_not_retried() -> None:
    """Once a byte of the answer came, the back end had the request: no resend."""
    net = Net()
    fetch(net, response())
    out = net.send()
    net.peers[0].send(b"HTTP/1.1 2")
    net.peers[0].close()
    assert isinstance(out.error(), BackendFailed)
    assert net.waiting == 0


@pytest.mark.parametrize(
    ("method", "body"),
    [(b"POST", b"once"), (b"POST", None), (b"DELETE", None), (b"GET", b"a body")],
    ids=["post-with-body", "post-without-body", "delete", "get-with-body"],
)
def test_stale_pooled_connection_never_resends_other_requests(
    method: bytes, body: bytes | None
) -> None:
    """A request that is not a body-less GET/HEAD/OPTIONS/TRACE is sent once only."""
    net = Net()
    fetch(net, response())
    source = None if body is None else Source.of(body)
    out = net.send(method, b"/p", body=source)
    net.peers[0].close()
    assert isinstance(out.error(), BackendFailed)
    assert net.waiting == 0
    assert net.up.connections_made == 1
    assert source is None or source.streams == 1


def test_cancel_aborts_the_connection() -> None:
    """Cancelling the request fails it with CancelledError and aborts the connection."""
    net = Net(response_timeout=30.0)
    out = net.send()
    peer = net.accept()
    out.d.cancel()
    assert isinstance(out.error(), CancelledError)
    assert peer.aborted
    assert net.up.idle_count("b1") == 0
    net.advance(0)
    assert len(out.results) == 1


def test_cancel_after_the_head_changes_nothing() -> None:
    """Once the head is in, cancelling its (fired) Deferred leaves the body flowing."""
    net = Net()
    out = net.send()
    peer = net.accept()
    peer.send(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nab")
    sink = Sink()
    out.exchange().deliver_body(sink)
    out.d.cancel()
    assert not peer.closed
    peer.send(b"cd")
    assert sink.result == (True, "")
    assert net.up.idle_count("b1") == 1


# -- flow control and aborts while the body is read ----------------------------------------


def test_pause_stops_reading_until_resume() -> None:
    """pause() stops reading the connection; resume() reads on."""
    net = Net()
    ex, sink = fetch(net, b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nab")
    peer = net.peers[0]
    ex.pause()
    assert not peer.reading
    ex.pause()  # twice: no harm
    ex.resume()
    assert peer.reading
    peer.send(b"cdef")
    assert sink.result == (True, "")
    assert sink.body == b"abcdef"


def test_pause_before_deliver_body_holds_until_resume() -> None:
    """Paused before deliver_body: held bytes are given, reading waits for resume."""
    net = Net()
    out = net.send()
    peer = net.accept()
    peer.send(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nab")
    ex = out.exchange()
    ex.pause()
    sink = Sink()
    ex.deliver_body(sink)
    assert sink.body == b"ab"
    assert not peer.reading
    ex.resume()
    assert peer.reading
    peer.send(b"cd")
    assert sink.result == (True, "")


def test_connection_paused_when_its_body_ends_is_pooled_reading() -> None:
    """A body completed while paused still leaves a working connection in the pool."""
    net = Net()
    out = net.send()
    peer = net.accept()
    peer.send(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nsmall")
    ex = out.exchange()
    sink = Sink()
    ex.deliver_body(sink)
    ex.pause()
    peer.send(b" body")  # already in flight when the pause came
    assert sink.result == (True, "")
    assert net.up.idle_count("b1") == 1
    assert peer.reading
    ex.resume()  # too late to matter: a no-op
    assert peer.reading
    _, sink = fetch(net, response(b"again"), peer)
    assert sink.body == b"again"
    assert net.up.connections_made == 1


def test_abort_during_body_ends_the_sink_incomplete() -> None:
    """abort() mid-body tells the sink body_end(False, "aborted") and aborts the connection."""
    net = Net()
    ex, sink = fetch(net, b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npart")
    assert sink.body == b"part"
    assert sink.result is None
    ex.abort()
    assert sink.result == (False, "aborted")
    assert net.peers[0].aborted
    assert net.up.idle_count("b1") == 0
    ex.abort()  # after the end: nothing
    net.advance(0)
    assert sink.result == (False, "aborted")


def test_abort_before_deliver_body_ends_it_incomplete_without_the_held_bytes() -> None:
    """An exchange aborted before deliver_body gives its sink only the end."""
    net = Net()
    out = net.send()
    peer = net.accept()
    peer.send(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npart")
    ex = out.exchange()
    ex.abort()
    sink = Sink()
    ex.deliver_body(sink)
    assert sink.result == (False, "aborted")
    assert sink.body == b""
    assert peer.aborted


@pytest.mark.parametrize(
    "answer",
    [
        b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nshort\r\n",
    ],
    ids=["content-length", "chunked"],
)
def test_connection_lost_mid_body_ends_the_sink_incomplete(answer: bytes) -> None:
    """A body cut short of its Content-Length or last chunk is reported incomplete."""
    net = Net()
    _, sink = fetch(net, answer)
    net.peers[0].close()
    assert sink.body == b"short"
    assert sink.result is not None
    assert sink.result[0] is False
    assert "connection lost" in sink.result[1]
    assert net.up.idle_count("b1") == 0


def test_body_stall_cuts_the_body_after_response_timeout() -> None:
    """Mid-body, response_timeout of silence cuts the body; each arrival moves it."""
    net = Net(response_timeout=5.0)
    _, sink = fetch(net, b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\na")
    peer = net.peers[0]
    for _ in range(3):
        net.advance(4.0)
        peer.send(b"b")
    net.advance(4.99)
    assert sink.result is None
    net.advance(0.01)
    assert sink.result == (False, "no body bytes for 5.0s")
    assert sink.body == b"abbb"
    assert peer.aborted


def test_no_stall_deadline_while_the_consumer_has_paused() -> None:
    """No stall deadline while the consumer has paused; it restarts at resume."""
    net = Net(response_timeout=5.0)
    ex, sink = fetch(net, b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\na")
    net.advance(3.0)
    ex.pause()
    net.advance(600.0)
    assert sink.result is None
    ex.resume()
    net.advance(4.99)
    assert sink.result is None
    net.advance(0.01)
    assert sink.result is not None
    assert sink.result[0] is False


# -- the pool --------------------------------------------------------------------------------


def test_idle_connection_is_closed_after_idle_timeout() -> None:
    """A pooled connection unused for idle_timeout seconds is closed (not aborted)."""
    net = Net(idle_timeout=30.0)
    fetch(net, response())
    peer = net.peers[0]
    net.advance(29.9)
    assert net.up.idle_count("b1") == 1
    assert not peer.closed
    net.advance(0.1)
    assert peer.closed
    assert not peer.aborted
    assert net.up.idle_count("b1") == 0
    net.advance(0)
    out = net.send()
    assert net.waiting == 1
    assert not out.fired


def test_reuse_restarts_the_idle_timeout() -> None:
    """Each return to the pool gives the connection idle_timeout afresh."""
    net = Net(idle_timeout=30.0, response_timeout=60.0)
    fetch(net, response())
    peer = net.peers[0]
    net.advance(20.0)
    fetch(net, response(), peer)
    net.advance(29.0)
    assert not peer.closed
    assert net.up.idle_count("b1") == 1
    net.advance(1.0)
    assert peer.closed


def test_idle_connection_closed_by_the_back_end_leaves_the_pool() -> None:
    """A back end closing an idle connection removes it from the pool."""
    net = Net()
    fetch(net, response())
    net.peers[0].close()
    assert net.up.idle_count("b1") == 0
    _, sink = fetch(net, response(b"hello"))
    assert sink.body == b"hello"
    assert net.up.connections_made == 2


def test_pool_reuses_the_most_recently_idle_connection() -> None:
    """Idle connections are taken last in, first out."""
    net = Net()
    first, second = net.send(), net.send()
    a, b = net.accept(), net.accept()
    b.send(response())
    a.send(response())  # a is released last
    for out in (first, second):
        out.exchange().deliver_body(Sink())
    assert net.up.idle_count("b1") == 2
    net.send()
    assert a.take().count(b"GET") == 2
    assert b.take().count(b"GET") == 1


def test_max_idle_per_backend_is_respected() -> None:
    """Only max_idle_per_backend connections stay pooled; the oldest idle one is closed."""
    net = Net(max_idle=2)
    outs = [net.send() for _ in range(4)]
    peers = [net.accept() for _ in range(4)]
    for peer, out in zip(peers, outs, strict=True):
        peer.send(response())
        out.exchange().deliver_body(Sink())
    assert net.up.connections_made == 4
    assert net.up.idle_count("b1") == 2
    assert [p.closed for p in peers] == [True, True, False, False]
    assert not any(p.aborted for p in peers)
    net.up.close_idle()
    assert net.up.idle_count("b1") == 0
    assert all(p.closed for p in peers)
    assert not any(p.aborted for p in peers)
    net.advance(0)
    out = net.send()
    assert net.waiting == 1
    assert not out.fired


def test_max_idle_zero_pools_nothing() -> None:
    """With max_idle_per_backend = 0 every connection closes after its exchange."""
    net = Net(max_idle=0)
    _, sink = fetch(net, response())
    assert sink.result == (True, "")
    assert net.peers[0].closed
    assert net.up.idle_count("b1") == 0


def test_pools_are_kept_per_server() -> None:
    """A connection to one server never carries a request for another."""
    net = Net()
    fetch(net, response())
    out = net.send(server="b2")
    assert net.waiting == 1
    assert not out.fired
    assert net.up.idle_count("b1") == 1
    assert net.up.idle_count("b2") == 0


NOT_REUSABLE = {
    "connection-close": (
        b"HTTP/1.1 200 OK\r\nConnection: keep-alive, close\r\nContent-Length: 2\r\n\r\nok"
    ),
    "http-1.0": b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok",
    "extra-bytes": b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 2",
    "extra-bytes-no-body": b"HTTP/1.1 204 No Content\r\n\r\nHTTP/",
    "second-response": response(b"ok") + response(b""),
}


@pytest.mark.parametrize("answer", NOT_REUSABLE.values(), ids=NOT_REUSABLE.keys())
def test_connection_not_reusable_is_not_pooled(answer: bytes) -> None:
    """Connection: close, HTTP/1.0 or bytes past the response: whole, not pooled."""
    net = Net()
    _, sink = fetch(net, answer)
    assert sink.result == (True, "")
    assert net.up.idle_count("b1") == 0
    assert net.peers[0].closed


def test_body_ended_by_the_close_is_not_pooled() -> None:
    """A body delimited by the close is whole at the close; never pooled."""
    net = Net()
    _, sink = fetch(net, b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nok")
    assert net.up.idle_count("b1") == 0
    assert sink.result is None
    net.peers[0].close()
    assert sink.result == (True, "")
    assert sink.body == b"ok"


def test_http_1_0_keep_alive_is_pooled() -> None:
    """An HTTP/1.0 answer that says keep-alive, with a length, keeps its connection."""
    net = Net()
    _, sink = fetch(
        net, b"HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 2\r\n\r\nok"
    )
    assert sink.result == (True, "")
    assert net.up.idle_count("b1") == 1


def test_drained_referral_leaves_the_connection_pooled() -> None:
    """A 421 whose body is drained returns its connection to the pool."""
    net = Net()
    out = net.send()
    peer = net.accept()
    peer.send(b"HTTP/1.1 421 Misdirected\r\nContent-Length: 6\r\n\r\nel")
    out.exchange().deliver_body(Drain())
    peer.send(b"sewh")
    assert net.up.idle_count("b1") == 1
