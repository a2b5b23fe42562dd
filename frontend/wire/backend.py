"""One back-end connection and the exchange it carries.

A :class:`BackendConnection` carries one exchange at a time: it writes the
request head, streams the request body from its source (with flow control
both ways), parses the response with :class:`ResponseParser`, and fires the
:class:`BackendExchange`'s Deferred once the response head is read; the body
then goes to the sink given to :meth:`BackendExchange.deliver_body`.
Afterwards the connection goes back to the pool (:mod:`frontend.wire.pool`),
or is closed.

Each state has its deadline: writing the body while the back end does not
read, and waiting for the head, ``response_timeout``; reading the body,
``response_timeout`` of silence (none while the consumer has paused it: the
client connection's ``send_timeout`` covers that); waiting for
``100 Continue``, one second, after which the body is sent anyway (as
clients do); idle in the pool, ``idle_timeout``.  While the body is being
sent and the back end takes it, the client connection's ``body_timeout``
times the wait.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from typing import Protocol as Interface

from twisted.internet import error as ierror
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IPushProducer, IReactorTime
from twisted.internet.protocol import Protocol, connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from frontend.errors import BackendFailed, GatewayTimeout
from frontend.wire.interfaces import BodySink, BodySource, OutgoingRequest
from frontend.wire.response_parser import Malformed, ResponseHead, ResponseParser
from frontend.wire.timers import Deadline
from frontend.wire.transport import write_now

__all__ = ["CONTINUE_WAIT", "BackendConnection", "BackendExchange"]

log = Logger()

_CONTINUE = 100
#: How long the body waits for ``100 Continue`` before it is sent anyway.
CONTINUE_WAIT = 1.0
_NO_LENGTH_METHODS = frozenset((b"GET", b"HEAD", b"DELETE", b"OPTIONS", b"TRACE"))
_RETRYABLE_METHODS = frozenset((b"GET", b"HEAD", b"OPTIONS", b"TRACE"))
Pairs = list[tuple[bytes, bytes]]


def request_head(request: OutgoingRequest) -> bytes:
    """The request line and headers, framed for the body the request carries."""
    parts = [request.method, b" ", request.target, b" HTTP/1.1\r\n"]
    for name, value in request.headers:
        parts += (name, b": ", value, b"\r\n")
    body = request.body
    if body is None:
        if request.method not in _NO_LENGTH_METHODS:
            parts.append(b"Content-Length: 0\r\n")
    else:
        length = body.length
        if length is None:
            parts.append(b"Transfer-Encoding: chunked\r\n")
        else:
            parts.append(b"Content-Length: %d\r\n" % length)
        if request.expect_continue:
            parts.append(b"Expect: 100-continue\r\n")
    parts.append(b"\r\n")
    return b"".join(parts)


class Pool(Interface):
    """What a back-end connection asks of the pool it belongs to
    (:class:`frontend.wire.pool.Upstream`)."""

    @property
    def clock(self) -> IReactorTime: ...

    response_timeout: float
    idle_timeout: float
    connections_made: int

    def connect(self, ex: BackendExchange) -> None:
        """Open a new connection for ``ex`` (a stale pooled one failed it)."""

    def release(self, conn: BackendConnection) -> None:
        """``conn`` finished an exchange cleanly: keep it idle, or close it."""

    def forget(self, conn: BackendConnection) -> None:
        """``conn`` closed while idle."""


def _address(peer: object) -> str:
    """``host:port`` of a transport's peer (``[host]:port`` for IPv6)."""
    host, port = getattr(peer, "host", None), getattr(peer, "port", None)
    if host is None or port is None:
        return "-"
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class BackendExchange:
    """One request to a back end and, once its head is read, the response."""

    __slots__ = (
        *("code", "phrase", "headers", "end_to_end", "length", "body_sent", "server", "key"),
        *("request", "peer"),
        *("retry", "_d", "_stop_connecting", "_conn", "_outcome", "_rest", "_delivered"),
    )

    def __init__(self, server: str, key: str, request: OutgoingRequest) -> None:
        self.code = 0
        self.phrase = b""
        self.headers: Pairs = []
        self.end_to_end: Pairs = []
        self.length: int | None = None
        self.body_sent = False
        self.peer = "-"  # the connection's, once one carries the exchange
        self.server, self.key, self.request = server, key, request
        # a stale pooled connection may be replaced once, for a request without body
        self.retry = request.body is None and request.method in _RETRYABLE_METHODS
        self._d: Deferred[BackendExchange] | None = None
        self._stop_connecting: Callable[[], object] | None = None
        self._conn: BackendConnection | None = None
        self._outcome: str | None = None  # how the body ended, if before deliver_body
        self._rest: list[bytes] = []  # body bytes that came before deliver_body
        self._delivered = False

    def header(self, name: bytes) -> list[bytes]:
        """All values of header ``name`` (given lowercase)."""
        n = len(name)
        return [v for k, v in self.headers if len(k) == n and k.lower() == name]

    def deliver_body(self, sink: BodySink) -> None:
        """Stream the body to ``sink``; what already came is given at once."""
        if self._delivered:
            raise RuntimeError("deliver_body called twice")
        self._delivered = True
        rest, self._rest = self._rest, []
        conn = self._conn
        if conn is not None:
            conn.deliver(sink, rest)
            return
        for data in rest:
            sink.body_data(data)
        sink.body_end(self._outcome)

    def whole_body(self) -> bytes | None:
        """The whole body, when it came with the head (it is then taken, as
        :meth:`deliver_body` would give it); None when more is to come."""
        conn = self._conn
        if self._delivered or conn is None or not conn.body_complete:
            return None
        self._delivered = True
        body, self._rest = b"".join(self._rest), []
        return body

    def pause(self) -> None:
        """Stop reading the back-end connection."""
        if self._conn is not None:
            self._conn.pause(paused=True)

    def resume(self) -> None:
        if self._conn is not None:
            self._conn.pause(paused=False)

    def abort(self) -> None:
        """Abort the connection; a sink is told ``body_end("aborted")``."""
        if self._conn is not None:
            self._conn.fail("aborted")

    def wait(self) -> Deferred[BackendExchange]:
        d: Deferred[BackendExchange] = Deferred(self._cancel)
        self._d = d
        return d

    @property
    def waiting(self) -> bool:
        """The response head has not been handed over yet."""
        return self._d is not None

    def fire(self, result: BackendExchange | BaseException | Failure) -> None:
        d, self._d = self._d, None
        if d is None:
            return
        if isinstance(result, BackendExchange):
            d.callback(result)
        else:
            d.errback(result)

    def _cancel(self, _d: Deferred[BackendExchange]) -> None:
        self._d = None  # Deferred.cancel then fails it with CancelledError
        if self._stop_connecting is not None:
            stop, self._stop_connecting = self._stop_connecting, None
            stop()
        elif self._conn is not None:
            self._conn.fail("cancelled")

    def connecting(self, stop: Callable[[], object]) -> None:
        """A connection is being made for this exchange; ``stop()`` gives it up."""
        self._stop_connecting = stop

    def connected(self, conn: BackendConnection) -> None:
        self._stop_connecting = None
        if self._d is None:
            conn.transport.loseConnection()
        else:
            conn.start(self, reused=False)

    def connect_failed(self, failure: Failure) -> None:
        self._stop_connecting = None
        self.fire(failure)  # a no-op once cancelled


@implementer(IPushProducer)
class _BodyWriter:
    """Writes a request body from its source to the back-end connection.

    It is the source's sink and the transport's producer: when the back
    end's socket is full the source is paused, and resumed when it drains.
    """

    __slots__ = ("_chunked", "_conn", "_ex", "_source", "done")

    def __init__(self, conn: BackendConnection, ex: BackendExchange, source: BodySource) -> None:
        self._conn, self._ex, self._source = conn, ex, source
        self._chunked = source.length is None
        self.done = False

    def body_data(self, data: bytes) -> None:
        if self.done or not data:
            return
        self._ex.body_sent = True
        if self._chunked:
            data = b"%x\r\n%s\r\n" % (len(data), data)
        write_now(self._conn.transport, data)

    def body_end(self, error: str | None) -> None:
        if self.done:
            return
        self.done = True
        conn = self._conn
        if error is None:
            if self._chunked:
                conn.transport.write(b"0\r\n\r\n")
            conn.body_written()
        else:
            conn.fail(f"the request body broke off ({error})")

    def detach(self) -> None:
        self.done = True

    def pauseProducing(self) -> None:
        if not self.done:
            self._source.pause()
            self._conn.write_blocked(blocked=True)

    def resumeProducing(self) -> None:
        if not self.done:
            self._conn.write_blocked(blocked=False)
            self._source.resume()

    def stopProducing(self) -> None:
        self.done = True


class BackendConnection(Protocol):
    """One back-end connection: one exchange at a time."""

    transport: Any

    def __init__(self, upstream: Pool) -> None:
        self._up = upstream
        self.key = ""
        self._parser = ResponseParser(self)
        self._ex: BackendExchange | None = None
        self._sink: BodySink | None = None
        self._writer: _BodyWriter | None = None
        self._deadline = Deadline(upstream.clock)
        self._idle = False
        self._closed = False
        self._reused = self._got = False  # _got: a byte of the response arrived
        self._waiting_continue = False
        self._continue_now = self._head_now = False
        self._body_done = True  # the whole request body went out
        self._in_body = False  # the response head arrived, its body is not over
        self._paused = self._held = False
        # told when the connection is made (a dialled one: see pool._Dial)
        self.on_made: Callable[[BackendConnection], None] | None = None
        self.peer = "-"  # host:port, for the access log

    def connectionMade(self) -> None:
        self._up.connections_made += 1
        self.peer = _address(self.transport.getPeer())
        if hasattr(self.transport, "setTcpNoDelay"):
            self.transport.setTcpNoDelay(True)  # a request head must not wait for ACKs
        made, self.on_made = self.on_made, None
        if made is not None:
            made(self)

    @property
    def idle(self) -> bool:
        return self._idle

    @property
    def body_complete(self) -> bool:
        """The response, body included, has been read whole."""
        return self._in_body and self._parser.complete and self._sink is None

    # starting an exchange

    def start(self, ex: BackendExchange, *, reused: bool) -> None:
        self.key, self._ex, ex._conn, ex.peer = ex.key, ex, self, self.peer
        self._idle, self._reused, self._got = False, reused, False
        self._in_body = self._held = self._paused = False
        request = ex.request
        self._body_done = request.body is None
        self._parser.start(bodyless=request.method == b"HEAD")
        write_now(self.transport, request_head(request))
        if request.body is None:
            self._arm_response()
        elif request.expect_continue:
            self._waiting_continue = True
            self._deadline.set(CONTINUE_WAIT, self._continue_anyway)
        else:
            self._send_body()

    def _send_body(self) -> None:
        ex = self._ex
        body = ex.request.body if ex is not None else None
        if ex is None or body is None:
            return
        self._waiting_continue = False
        self._deadline.clear()  # the client connection times a slow body
        writer = self._writer = _BodyWriter(self, ex, body)
        self.transport.registerProducer(writer, streaming=True)
        body.stream_to(writer)

    def _continue_anyway(self) -> None:
        if self._waiting_continue and self._ex is not None:
            self._send_body()

    def body_written(self) -> None:
        """The whole request body went out."""
        self._body_done = True
        self._stop_writer()
        if self._ex is not None and not self._in_body and not self._parser.complete:
            self._arm_response()

    def write_blocked(self, *, blocked: bool) -> None:
        """The back end stopped (or resumed) taking the body."""
        if self._ex is None or self._in_body:
            return
        if blocked:
            self._arm_response()
        else:
            self._deadline.clear()

    def _stop_writer(self) -> None:
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.detach()
            if not self._closed:
                self.transport.unregisterProducer()

    def _arm_response(self) -> None:
        self._deadline.set(self._up.response_timeout, self._timed_out)

    # reading the response

    def dataReceived(self, data: bytes) -> None:
        if self._ex is None:  # nothing was asked: a confused back end
            self._close(abort=True)
            return
        self._got = True
        try:
            self._parser.feed(data)
        except Malformed as e:
            if not self._parser.complete:
                self._head_now = self._continue_now = False
                self.fail(str(e))
                return
            # a whole answer, then garbage: the answer stands, the connection goes
            self._parser.extra = True
        if self._continue_now:
            self._continue_now = False
            if self._waiting_continue:
                self._send_body()
        if self._head_now:
            self._head_now = False
            self._head_arrived()
        if not self._in_body:
            return
        if self._parser.complete:
            self._end_body(None)
        elif self._sink is None and not self._held and self._ex is not None and self._ex._rest:
            # body bytes nobody takes yet: read no more until deliver_body
            self._held = True
            if not self._paused:
                self.transport.pauseProducing()

    def response_interim(self, code: int) -> None:
        if code == _CONTINUE:
            self._continue_now = True

    def response_head(self, head: ResponseHead) -> None:
        ex = self._ex
        if ex is None:  # cannot be: the parser is fed only during an exchange
            raise Malformed("a response to no request")
        ex.code, ex.phrase, ex.headers, ex.length = (
            head.code,
            head.phrase,
            head.headers,
            head.length,
        )
        ex.end_to_end = head.end_to_end
        self._in_body = True
        self._head_now = True
        if self._waiting_continue:  # a final answer before 100: the body stays unsent
            self._waiting_continue = False
            self._deadline.clear()

    def response_data(self, data: bytes) -> None:
        sink = self._sink
        if sink is not None:
            sink.body_data(data)
            if not self._paused and self._in_body:
                self._deadline.set(self._up.response_timeout, self._timed_out)
        elif self._ex is not None:
            self._ex._rest.append(data)  # kept until deliver_body (see dataReceived)

    def _head_arrived(self) -> None:
        ex = self._ex
        if ex is None:
            return
        if not self._parser.complete:
            self._deadline.set(self._up.response_timeout, self._timed_out)
        ex.fire(ex)

    def deliver(self, sink: BodySink, rest: list[bytes]) -> None:
        self._sink = sink
        for data in rest:
            sink.body_data(data)
        if self._held:
            self._held = False
            if not self._paused:
                self.transport.resumeProducing()

    def pause(self, *, paused: bool) -> None:
        """Stop (or start again) reading the response, for the consumer."""
        if self._paused is paused:
            return
        self._paused = paused
        if paused:
            self._deadline.clear()  # a slow client is not the back end's fault
        elif self._in_body:
            self._deadline.set(self._up.response_timeout, self._timed_out)
        if not self._held and not self._closed:
            if paused:
                self.transport.pauseProducing()
            else:
                self.transport.resumeProducing()

    def _end_body(self, error: str | None) -> None:
        """The response is over: pool or close the connection, tell the sink."""
        ex, sink = self._ex, self._sink
        if ex is None:
            return
        head = self._parser.head
        reusable = (
            error is None
            and head is not None
            and head.reusable
            and not self._parser.extra
            and self._body_done
        )
        self._detach()
        if reusable:
            if self._paused or self._held:
                self._paused = self._held = False
                self.transport.resumeProducing()
            self._up.release(self)
        else:
            self._close(abort=error is not None)
        if sink is None:
            ex._outcome = error
            if error is not None:
                ex._rest = []
            return
        try:
            sink.body_end(error)
        except Exception:
            log.failure("a body sink failed at the end of a back-end response")

    def _detach(self) -> BackendExchange | None:
        """Part the connection from its exchange and stop its timer."""
        ex, self._ex, self._sink = self._ex, None, None
        if ex is not None:
            ex._conn = None
        self._stop_writer()
        self._in_body = self._waiting_continue = False
        self._deadline.clear()
        return ex

    # failures

    def fail(self, detail: str) -> None:
        """The exchange cannot go on: abort the connection, tell whoever waits."""
        ex = self._ex
        if ex is None:
            return
        if self._in_body and not ex.waiting:  # the head went to the handler
            self._end_body(detail)
            return
        self._detach()
        self._close(abort=True)
        ex.fire(BackendFailed(detail=f"{ex.server}: {detail}"))

    def _timed_out(self) -> None:
        t = self._up.response_timeout
        ex = self._ex
        if ex is None:
            return
        if self._in_body:
            log.warn(
                "back end {s} sent nothing for {t}s mid-body: cutting it off", s=ex.server, t=t
            )
            self._end_body(f"no body bytes for {t}s")
            return
        self._detach()
        self._close(abort=True)
        ex.fire(GatewayTimeout(detail=f"{ex.server}: no response in {t}s"))

    def _close(self, *, abort: bool = False) -> None:
        """Close the connection (it is then never pooled again)."""
        if self._idle:
            self._up.forget(self)
            self._idle = False
        if self._closed:
            return
        self._closed = True
        self._deadline.stop()
        if abort:
            self.transport.abortConnection()
        else:
            self.transport.loseConnection()

    def expire(self) -> None:
        self._close()

    def mark_idle(self) -> None:
        self._idle = True
        self._deadline.set(self._up.idle_timeout, self.expire)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self._closed = True
        self._deadline.stop()
        if self._idle:
            self._up.forget(self)
            self._idle = False
            return
        ex = self._ex
        if ex is None:
            return
        if self._in_body:
            clean = reason.check(ierror.ConnectionDone) is not None and self._parser.eof()
            self._end_body(None if clean else f"connection lost: {reason.getErrorMessage()}")
            return
        self._detach()
        if self._reused and not self._got and ex.retry:
            ex.retry = False  # once: it was a stale pooled connection
            self._up.connect(ex)
            return
        why = reason.getErrorMessage()
        ex.fire(BackendFailed(detail=f"{ex.server}: connection lost before the head ({why})"))
