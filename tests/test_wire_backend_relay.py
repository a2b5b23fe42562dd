"""ResponseRelay in memory: a back end's body relayed to a client request,
with flow control both ways, between an in-memory back-end connection and a
fake client connection."""

from __future__ import annotations

from frontend.wire.incoming import IncomingRequest
from frontend.wire.interfaces import BodySink, PushProducer
from frontend.wire.relay import ResponseRelay
from frontend.wire.request_head import RequestHead
from tests.backend_doubles import Net, Peer


class Client:
    """A ClientChannel that records what the request does to its connection."""

    peer = "192.0.2.1"
    secure = False

    def __init__(self) -> None:
        self.sent: list[bytes] = []
        self.producer: PushProducer | None = None
        self.done: list[tuple[bool, bool]] = []  # (keep_alive, abort)

    @property
    def data(self) -> bytes:
        return b"".join(self.sent)

    def send(self, data: bytes) -> None:
        self.sent.append(data)

    def read_body(self, _request: IncomingRequest, _sink: BodySink) -> None:
        raise AssertionError("the relay never reads the request body")

    def pause_body(self) -> None:
        raise AssertionError("the relay never reads the request body")

    def resume_body(self) -> None:
        raise AssertionError("the relay never reads the request body")

    def body_unread(self) -> bool:
        return False

    def stream_from(self, producer: PushProducer) -> None:
        assert self.producer is None
        self.producer = producer

    def stop_streaming(self) -> None:
        self.producer = None

    def request_done(self, _request: IncomingRequest, *, keep_alive: bool, abort: bool) -> None:
        self.done.append((keep_alive, abort))


class Relayed:
    """A GET relayed from back end to client: the parts, and on_done's report."""

    def __init__(self, answer: bytes, *, length: int | None) -> None:
        self.net = Net()
        out = self.net.send()
        self.backend: Peer = self.net.accept()
        self.backend.send(answer)
        self.exchange = out.exchange()
        self.client = Client()
        head = RequestHead(
            method=b"GET",
            target=b"/",
            version=b"HTTP/1.1",
            headers=[],
            length=0,
            keep_alive=True,
            expect_continue=False,
            end_to_end=[],
            authorization=[],
        )
        self.request = IncomingRequest(self.client, head)
        self.request.respond(self.exchange.code, self.exchange.phrase, [], length)
        self.reports: list[tuple[int, bool]] = []
        self.relay = ResponseRelay(
            self.request,
            self.exchange,
            lambda sent, error: self.reports.append((sent, error is None)),
        )
        self.relay.start()


def test_whole_body_is_relayed_and_the_request_finished() -> None:
    """A body that came with the head leaves with it in one write; the request finishes."""
    r = Relayed(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", length=5)
    assert r.client.sent == [b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"]
    assert r.client.done == [(True, False)]
    assert r.client.producer is None
    assert r.reports == [(5, True)]
    assert r.relay.sent == 5
    assert r.net.up.idle_count("b1") == 1


def test_streamed_body_flushes_the_head_first_then_follows() -> None:
    """A body still coming: the client gets the head at once, then each piece."""
    r = Relayed(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", length=None)
    assert r.client.data == b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    assert r.client.producer is r.relay
    assert r.reports == []
    r.backend.send(b"3\r\nabc\r\n", b"0\r\n\r\n")
    assert r.client.data.endswith(b"3\r\nabc\r\n0\r\n\r\n")
    assert r.reports == [(3, True)]
    assert r.client.done == [(True, False)]


def test_client_pause_and_resume_reach_the_back_end_connection() -> None:
    """The client pausing and resuming the relay stops and restarts back-end reads."""
    r = Relayed(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nab", length=10)
    assert r.client.producer is r.relay
    r.relay.pauseProducing()
    assert not r.backend.reading
    r.relay.resumeProducing()
    assert r.backend.reading
    r.backend.send(b"cdefghij")
    assert r.reports == [(10, True)]


def test_client_gone_aborts_the_back_end_exchange() -> None:
    """A client gone (stopProducing) aborts the back end; on_done says incomplete."""
    r = Relayed(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nab", length=10)
    r.relay.stopProducing()
    assert r.backend.aborted
    assert r.net.up.idle_count("b1") == 0
    assert r.reports == [(2, False)]
    assert r.client.done == []
    r.relay.client_gone()  # twice: once is enough
    r.net.advance(0)
    assert r.reports == [(2, False)]


def test_cut_body_reaches_the_request_as_cut() -> None:
    """A back-end body that breaks off reaches the client request as cut()."""
    r = Relayed(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n", length=None)
    r.backend.close()
    assert r.request.done
    assert r.client.done == [(False, False)]
    assert r.client.data.endswith(b"3\r\nabc\r\n")
    assert b"0\r\n\r\n" not in r.client.data
    assert r.reports == [(3, False)]
    assert r.client.producer is None


def test_back_end_stall_cuts_the_client_response() -> None:
    """The back end's stall deadline cuts the relayed body too."""
    r = Relayed(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nab", length=10)
    r.net.advance(r.net.up.response_timeout)
    assert r.client.done == [(False, False)]
    assert r.reports == [(2, False)]
