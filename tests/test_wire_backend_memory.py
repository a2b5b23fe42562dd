"""The back-end client (Upstream, BackendConnection) in memory: requests,
responses and the answers llhttp refuses, the test playing the back end byte
by byte."""

from __future__ import annotations

import pytest
from twisted.internet.error import ConnectionLost

from frontend.errors import BackendFailed
from tests.backend_doubles import Net, Peer, Sink, Source, fetch, response

# -- requests and responses ------------------------------------------------------------


def test_content_length_responses_reuse_one_connection() -> None:
    """Three sequential GETs get their bodies over one pooled connection."""
    net = Net()
    peer: Peer | None = None
    for _ in range(3):
        ex, sink = fetch(net, response(b"hello"), peer)
        peer = net.peers[0]
        assert (ex.code, ex.phrase, ex.length) == (200, b"OK", 5)
        assert sink.result == (True, "")
        assert sink.body == b"hello"
    assert net.peers[0].received == b"GET / HTTP/1.1\r\n\r\n" * 3
    assert len(net.attempts) == 1
    assert net.up.connections_made == 1
    assert net.up.idle_count("B1") == 1
    assert not net.peers[0].closed


def test_connection_is_made_to_the_hosts_address_with_nodelay() -> None:
    """A [hosts] server is connected by address, port and connect timeout, Nagle off."""
    net = Net(connect_timeout=3.5)
    net.send(server="B2")
    host, port, _, timeout, _ = net.attempts[0]
    assert (host, port, timeout) == ("10.0.0.2", 8080, 3.5)
    peer = net.accept()
    assert peer.transport.nodelay
    assert net.up.connections_made == 1


def test_request_head_is_sent_byte_for_byte() -> None:
    """The head goes out byte for byte; Content-Length: 0 only where a body is expected."""
    net = Net()
    headers = [(b"Host", b"b1.example.com"), (b"X-Zed", b"2"), (b"x-alpha", b"a, b")]
    fetch(net, response(), target=b"/a%2Fb?x=1&y=%20", headers=headers)
    peer = net.peers[0]
    assert peer.take() == (
        b"GET /a%2Fb?x=1&y=%20 HTTP/1.1\r\nHost: b1.example.com\r\nX-Zed: 2\r\n"
        b"x-alpha: a, b\r\n\r\n"
    )
    for method, head in [
        (b"POST", b"POST /p HTTP/1.1\r\nContent-Length: 0\r\n\r\n"),
        (b"PROPFIND", b"PROPFIND /p HTTP/1.1\r\nContent-Length: 0\r\n\r\n"),
        (b"DELETE", b"DELETE /p HTTP/1.1\r\n\r\n"),
        (b"OPTIONS", b"OPTIONS /p HTTP/1.1\r\n\r\n"),
    ]:
        fetch(net, response(), peer, method=method, target=b"/p")
        assert peer.take() == head
    assert net.up.connections_made == 1


def test_small_body_follows_its_head_with_content_length() -> None:
    """A body of known length goes after the head, framed by Content-Length."""
    net = Net()
    source = Source.of(b"a=1&b=2")
    out = net.send(b"POST", b"/x", [(b"Host", b"b1")], source)
    peer = net.accept()
    assert peer.received == b"POST /x HTTP/1.1\r\nHost: b1\r\nContent-Length: 7\r\n\r\na=1&b=2"
    peer.send(response(b"done"))
    ex = out.exchange()
    assert ex.body_sent
    assert source.streams == 1
    sink = Sink()
    ex.deliver_body(sink)
    assert sink.body == b"done"
    assert net.up.idle_count("b1") == 1


def test_headers_are_kept_raw_and_looked_up_case_insensitively() -> None:
    """Headers keep their case, order and framing headers; header() ignores case."""
    net = Net()
    ex, _ = fetch(
        net, response(b"x", headers=b"Set-Cookie: a=1\r\nX-Thing: v\r\nset-cookie: b=2\r\n")
    )
    assert ex.headers == [
        (b"Set-Cookie", b"a=1"),
        (b"X-Thing", b"v"),
        (b"set-cookie", b"b=2"),
        (b"Content-Length", b"1"),
    ]
    assert ex.header(b"set-cookie") == [b"a=1", b"b=2"]
    assert ex.header(b"x-missing") == []


def test_header_values_lose_surrounding_whitespace() -> None:
    """Optional whitespace around a header value is not part of it (RFC 9110 5.5)."""
    net = Net()
    ex, _ = fetch(net, response(b"x", headers=b"X-Thing:  v \t\r\n"))
    assert ex.header(b"x-thing") == [b"v"]


CHUNKED = (
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"5\r\nhello\r\n"
    b"1;ext=1\r\n \r\n"
    b"0000A\r\n0123456789\r\n"
    b"0\r\nX-Trailer: t\r\n\r\n"
)


def test_chunked_body_is_dechunked_across_every_split() -> None:
    """A chunked body cut anywhere in two reads gives the payload; the connection is reused."""
    net = Net()
    out = net.send()
    peer = net.accept()
    for cut in range(1, len(CHUNKED)):
        if out.fired:
            out = net.send()
        peer.send(CHUNKED[:cut])
        if not out.fired:
            peer.send(CHUNKED[cut:])
            ex, sink = out.exchange(), Sink()
            ex.deliver_body(sink)
        else:
            ex, sink = out.exchange(), Sink()
            ex.deliver_body(sink)
            peer.send(CHUNKED[cut:])
        assert ex.length is None
        assert ex.header(b"x-trailer") == []
        assert sink.result == (True, ""), cut
        assert sink.body == b"hello 0123456789", cut
        assert net.up.idle_count("b1") == 1
    assert net.up.connections_made == 1


def test_response_dribbled_one_byte_per_read_is_parsed() -> None:
    """A head and chunked body arriving one byte at a time parse the same."""
    net = Net()
    out = net.send()
    peer = net.accept()
    sink = Sink()
    for i in range(len(CHUNKED)):
        peer.send(CHUNKED[i : i + 1])
        if i == CHUNKED.index(b"\r\n\r\n") + 3:
            out.exchange().deliver_body(sink)  # the head is complete with this byte
    assert out.exchange().code == 200
    assert sink.body == b"hello 0123456789"
    assert sink.result == (True, "")
    assert net.up.idle_count("b1") == 1


def test_close_delimited_body_ends_at_a_clean_close() -> None:
    """Without Content-Length or chunking the body runs to the close; not pooled."""
    net = Net()
    ex, sink = fetch(net, b"HTTP/1.1 200 OK\r\nX: y\r\n\r\nuntil ")
    net.peers[0].send(b"the end")
    assert ex.length is None
    assert sink.result is None
    net.peers[0].close()
    assert sink.result == (True, "")
    assert sink.body == b"until the end"
    assert net.up.idle_count("b1") == 0


def test_close_delimited_body_broken_by_a_reset_is_incomplete() -> None:
    """A connection that breaks (not a clean close) cuts a close-delimited body."""
    net = Net()
    _, sink = fetch(net, b"HTTP/1.0 200 OK\r\n\r\npart")
    net.peers[0].close(ConnectionLost("reset"))
    assert sink.result is not None
    assert sink.result[0] is False
    assert sink.body == b"part"


def test_body_received_before_deliver_body_is_kept_and_reading_stops() -> None:
    """Body bytes before deliver_body are held, reading paused, then given at once."""
    net = Net()
    out = net.send()
    peer = net.accept()
    peer.send(b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nab")
    ex = out.exchange()
    assert not peer.reading
    peer.send(b"cd")
    sink = Sink()
    ex.deliver_body(sink)
    assert sink.body == b"abcd"
    assert sink.result is None
    assert peer.reading
    peer.send(b"ef")
    assert sink.result == (True, "")
    assert sink.body == b"abcdef"
    assert net.up.idle_count("b1") == 1


def test_body_completed_before_deliver_body_is_given_whole() -> None:
    """A body ended before deliver_body: pooled at once, then given whole to the sink."""
    net = Net()
    out = net.send()
    peer = net.accept()
    peer.send(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nab", b"cd")
    assert net.up.idle_count("b1") == 1
    assert peer.reading
    sink = Sink()
    out.exchange().deliver_body(sink)
    assert sink.body == b"abcd"
    assert sink.result == (True, "")


def test_deliver_body_twice_is_refused() -> None:
    """A body goes to one sink only."""
    net = Net()
    ex, _ = fetch(net, response())
    with pytest.raises(RuntimeError):
        ex.deliver_body(Sink())


def test_head_response_has_no_body_and_keeps_the_connection() -> None:
    """A HEAD answer's Content-Length announces no body; the connection is reused."""
    net = Net()
    peer: Peer | None = None
    for _ in range(2):
        ex, sink = fetch(
            net, b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n", peer, method=b"HEAD"
        )
        peer = net.peers[0]
        assert ex.length == 0
        assert ex.header(b"content-length") == [b"100"]
        assert sink.result == (True, "")
        assert sink.body == b""
    assert net.up.connections_made == 1
    assert net.up.idle_count("b1") == 1


def test_head_response_followed_by_a_body_is_not_pooled() -> None:
    """A body sent after a HEAD answer: the answer stands, the connection is closed."""
    net = Net()
    ex, sink = fetch(net, b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nbody", method=b"HEAD")
    assert ex.code == 200
    assert sink.result == (True, "")
    assert sink.body == b""
    assert net.up.idle_count("b1") == 0
    assert net.peers[0].closed


@pytest.mark.parametrize("status", [b"204 No Content", b"304 Not Modified"])
def test_204_and_304_have_no_body(status: bytes) -> None:
    """204 and 304 end at their head (a Content-Length notwithstanding); pooled."""
    net = Net()
    ex, sink = fetch(net, b"HTTP/1.1 " + status + b"\r\nETag: x\r\nContent-Length: 9\r\n\r\n")
    assert ex.length == 0
    assert sink.result == (True, "")
    assert net.up.idle_count("b1") == 1


def test_interim_answers_are_skipped() -> None:
    """100 and 103 are read past, whole or split; the final answer is the response."""
    interim = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </s>\r\n\r\n"
    final = b"HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok"
    for pieces in ([interim + final], [interim[:30], interim[30:] + final[:10], final[10:]]):
        net = Net()
        out = net.send(b"POST", body=Source.of(b"x"))
        peer = net.accept()
        peer.send(*pieces)
        ex, sink = out.exchange(), Sink()
        ex.deliver_body(sink)
        assert (ex.code, ex.phrase, ex.headers) == (201, b"Created", [(b"Content-Length", b"2")])
        assert sink.body == b"ok"
        assert net.up.idle_count("b1") == 1


# -- answers llhttp refuses: 502 ---------------------------------------------------------

REFUSED = {
    "bad-code": b"HTTP/1.1 2OO OK\r\n\r\n",
    "not-http": b"hello there\r\n\r\n",
    "http2": b"HTTP/2 200 OK\r\n\r\n",
    "101": b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\nConnection: upgrade\r\n\r\n",
    "no-colon": b"HTTP/1.1 200 OK\r\nNo colon here\r\n\r\n",
    "space-in-name": b"HTTP/1.1 200 OK\r\nBad Name: x\r\n\r\n",
    "obs-fold": b"HTTP/1.1 200 OK\r\nX: a\r\n folded\r\nContent-Length: 0\r\n\r\n",
    "nul-in-value": b"HTTP/1.1 200 OK\r\nX: a\x00b\r\nContent-Length: 0\r\n\r\n",
    "ctl-in-value": b"HTTP/1.1 200 OK\r\nX: a\x01b\r\nContent-Length: 0\r\n\r\n",
    "del-in-value": b"HTTP/1.1 200 OK\r\nX: a\x7fb\r\nContent-Length: 0\r\n\r\n",
    "bare-cr": b"HTTP/1.1 200 OK\r\nX: a\rb\r\nContent-Length: 0\r\n\r\n",
    "bare-lf": b"HTTP/1.1 200 OK\r\nX: a\nContent-Length: 1\r\n\r\n",
    "bare-lf-status": b"HTTP/1.1 200 OK\nContent-Length: 0\r\n\r\n",
    "negative-length": b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
    "length-list": b"HTTP/1.1 200 OK\r\nContent-Length: 1, 1\r\n\r\n",
    "length-overflow": b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999999\r\n\r\n",
    "two-lengths": b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
    "two-equal-lengths": b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n",
    "length-and-chunked": (
        b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n"
    ),
    "101-headers": b"HTTP/1.1 101 Switching Protocols\r\n\r\n",
    "more-than-100-headers": b"HTTP/1.1 200 OK\r\n" + b"X: y\r\n" * 101 + b"\r\n",
    "header-line-over-16k": b"HTTP/1.1 200 OK\r\nX: " + b"y" * 16400 + b"\r\n\r\n",
    "head-over-64k-unfinished": b"HTTP/1.1 200 OK\r\nX: " + b"y" * (65 * 1024),
}


@pytest.mark.parametrize("answer", REFUSED.values(), ids=REFUSED.keys())
def test_refused_response_fails_with_backend_failed(answer: bytes) -> None:
    """A head llhttp or the limits refuse: BackendFailed (502), connection aborted."""
    net = Net()
    out = net.send()
    peer = net.accept()
    peer.send(answer)
    error = out.error()
    assert isinstance(error, BackendFailed), error
    assert error.status == 502, error
    assert error.detail.startswith("b1: ")
    assert peer.aborted
    assert net.up.idle_count("b1") == 0
    net.advance(0)  # connectionLost comes after: nothing more happens
    assert len(out.results) == 1


def test_100_headers_are_accepted() -> None:
    """The header limit is inclusive: 100 fields are fine."""
    net = Net()
    ex, sink = fetch(net, b"HTTP/1.1 200 OK\r\n" + b"X: y\r\n" * 99 + b"Content-Length: 0\r\n\r\n")
    assert len(ex.headers) == 100
    assert sink.result == (True, "")


def test_refused_head_split_over_reads_fails_the_same() -> None:
    """Too many headers arriving a few at a time are refused when the 101st comes."""
    net = Net()
    out = net.send()
    peer = net.accept()
    peer.send(b"HTTP/1.1 200 OK\r\n")
    for _ in range(100):
        peer.send(b"X: y\r\n")
    assert not out.fired
    peer.send(b"X: y\r\n", b"\r\n")
    assert isinstance(out.error(), BackendFailed)
    assert peer.aborted


def test_head_over_64k_in_one_read_is_refused() -> None:
    """A complete head of 80 KiB (80 headers of 1 KiB) arriving in one read is refused."""
    net = Net()
    out = net.send()
    peer = net.accept()
    fields = b"".join(b"X-%d: %s\r\n" % (i, b"v" * 1024) for i in range(80))
    peer.send(b"HTTP/1.1 200 OK\r\n" + fields + b"Content-Length: 0\r\n\r\n")
    assert isinstance(out.error(), BackendFailed)


def test_status_below_100_is_refused() -> None:
    """A status code under 100 is not HTTP: BackendFailed at once."""
    net = Net()
    out = net.send()
    peer = net.accept()
    peer.send(b"HTTP/1.1 099 Odd\r\nContent-Length: 0\r\n\r\n")
    assert isinstance(out.error(), BackendFailed)


BROKEN_CHUNKS = {
    "invalid-size": b"zz\r\n",
    "negative-size": b"-1\r\n",
    "hex-prefix": b"0x5\r\n",
    "blank-size": b" \r\n",
    "size-overflow": b"1" * 20 + b"\r\n",
    "no-crlf-after-data": b"5\r\nhelloXX",
    "control-byte-in-extension": b"5;a=\x01\r\nhello\r\n",
}


@pytest.mark.parametrize("chunk", BROKEN_CHUNKS.values(), ids=BROKEN_CHUNKS.keys())
def test_broken_chunk_after_the_head_cuts_the_body(chunk: bytes) -> None:
    """Chunk framing llhttp refuses after the head: the body ends incomplete, aborted."""
    net = Net()
    ex, sink = fetch(net, b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n")
    net.peers[0].send(chunk)
    assert sink.body.startswith(b"abc")
    assert sink.result is not None
    assert sink.result[0] is False
    assert "refused by llhttp" in sink.result[1]
    assert ex.code == 200
    assert net.peers[0].aborted
    assert net.up.idle_count("b1") == 0


@pytest.mark.parametrize(
    "answer",
    [
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokGARBAGE",
        b"HTTP/1.1 204 No Content\r\n\r\nGARBAGE",
    ],
    ids=["invalid-chunk-size", "garbage-after-body", "garbage-after-204"],
)
def test_refusal_in_the_read_that_brought_the_head_settles_the_request(answer: bytes) -> None:
    """Bytes refused in the head's own read still settle the request."""
    net = Net()
    out = net.send()
    peer = net.accept()
    peer.send(answer)
    assert out.fired
    assert peer.closed
    assert net.up.idle_count("b1") == 0


def test_second_response_in_one_read_is_not_part_of_the_body() -> None:
    """A response glued after a complete one is not appended to its body."""
    net = Net()
    _, sink = fetch(net, response(b"ok") + response(b"abc"))
    assert sink.body == b"ok"
    assert sink.result == (True, "")
    assert net.up.idle_count("b1") == 0


def test_garbage_after_a_complete_response_in_a_later_read_closes_the_pooled_connection() -> None:
    """Bytes on a connection idle in the pool: it is aborted and leaves the pool."""
    net = Net()
    _, sink = fetch(net, response(b"ok"))
    assert sink.result == (True, "")
    assert net.up.idle_count("b1") == 1
    net.peers[0].send(b"GARBAGE")
    assert net.peers[0].aborted
    assert net.up.idle_count("b1") == 0
    net.advance(0)
    out = net.send()
    assert net.waiting == 1
    assert not out.fired
