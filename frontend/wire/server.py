"""Client connections: requests read on llhttp, handed over at their head,
answered in order, each state of the connection under exactly one deadline.

A connection is in one of these states, and :meth:`ClientConnection._arm`
is the one place that gives each its deadline, set on entering it:

========================  ====================  =============================
state                     deadline              when it passes
========================  ====================  =============================
idle between requests     ``idle_timeout``      closed quietly
reading a head            ``header_timeout``    408, closed
waiting for the handler   ``answer_timeout``    504 (or cut), closed
(its answer, or the back
end taking the body)
reading a body            ``body_timeout``      408 (or cut), closed
                          since the last byte
writing, client paused    ``send_timeout``      closed, back end aborted
lingering after a refusal ``linger_timeout``    closed
                          (at most 30 s)
========================  ====================  =============================

Pipelined bytes that arrive during a request are buffered (up to 64 KiB,
then reading stops) and read when it is over: a partial head among them is
"reading a head" from that moment.

A request is handed to the handler as soon as its head is read; reading
stops until the handler asks for the body (:meth:`read_body`), which is
when a client that sent ``Expect: 100-continue`` gets ``100 Continue``.
A request answered without its body being read is answered at once and its
connection closed after a lingering read, as nginx does: the write side is
shut, and what the client still sends is read and dropped for up to
``linger_timeout`` seconds of silence (30 s in all), so that the client
reads the answer instead of a reset.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IPushProducer, IReactorTime, ISSLTransport
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from frontend.errors import (
    AnswerTimeout,
    ProxyError,
    RequestTimeout,
    TooManyConnections,
    status_for,
)
from frontend.wire.incoming import IncomingRequest, RequestHandler, error_page, phrase_of
from frontend.wire.interfaces import BodySink, PushProducer
from frontend.wire.request_reader import RequestReader
from frontend.wire.timers import Deadline
from frontend.wire.transport import write_now

__all__ = ["ClientConnection", "ClientLimits", "FrontEndFactory"]

log = Logger()

PAUSE_AT = 1 << 16  # pipelined bytes buffered before reading stops
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"

# connection states
IDLE, HEAD, ACTIVE, LINGER, CLOSED = "idle", "head", "active", "linger", "closed"
# the body of the active request
NO_BODY, HELD, READING, PAUSED, DONE, FAILED = "none", "held", "reading", "paused", "done", "failed"
# deadlines (one per state; an active request's depends on what it waits for)
IDLE_DUE, HEAD_DUE, WAIT_DUE, BODY_DUE, SEND_DUE, LINGER_DUE = (
    "idle",
    "head",
    "answer",
    "body",
    "send",
    "linger",
)


@dataclass
class ClientLimits:
    """The limits the listeners apply (mutable: a reload changes them in place)."""

    header_timeout: float = 10.0
    body_timeout: float = 300.0
    idle_timeout: float = 60.0
    answer_timeout: float = 200.0
    send_timeout: float = 60.0
    linger_timeout: float = 5.0
    linger_time: float = 30.0
    max_connections: int = 10_000
    max_body_size: int = 1 << 30


@implementer(IPushProducer)
class ClientConnection(Protocol):
    """One client connection; also the producer registered with its
    transport while a response streams (it passes pause and resume on)."""

    transport: Any

    def __init__(self, factory: FrontEndFactory) -> None:
        self.factory = factory
        self._limits = factory.limits
        self._clock = factory.clock
        self._reader = RequestReader(factory.limits.max_body_size)
        self._state = IDLE
        self._request: IncomingRequest | None = None
        self._body = NO_BODY
        self._sink: BodySink | None = None
        self._producer: PushProducer | None = None
        self._write_paused = False
        self._reading = True
        self._looping = self._again = False
        self._deadline = Deadline(factory.clock)
        self._armed = ""
        self._linger_until = 0.0
        self.peer = "-"
        self.secure = False

    # what tests look at

    @property
    def state(self) -> str:
        return self._state

    @property
    def body_state(self) -> str:
        return self._body

    @property
    def deadline(self) -> str:
        """The deadline armed ("" when closed)."""
        return self._armed if self._deadline.pending else ""

    # connection life

    def connectionMade(self) -> None:
        transport = self.transport
        if hasattr(transport, "setTcpNoDelay"):
            transport.setTcpNoDelay(True)  # small answers must not wait for ACKs
        self.peer = str(getattr(transport.getPeer(), "host", "-"))
        self.secure = ISSLTransport.providedBy(transport)
        factory = self.factory
        factory.opened(self)
        if len(factory.connections) > self._limits.max_connections:
            log.warn("over {n} client connections: refusing one", n=self._limits.max_connections)
            self._refuse(TooManyConnections(detail="connection over the limit"), linger=False)
            return
        self._arm()

    def connectionLost(self, reason: Failure = connectionDone) -> None:  # noqa: ARG002 - any reason ends it alike
        self._state = CLOSED
        self._armed = ""
        self._deadline.stop()
        self.factory.connection_closed(self)
        request, self._request = self._request, None
        sink, self._sink = self._sink, None
        if sink is not None:
            sink.body_end("the client went away")
        if request is not None:
            request.gone()

    def dataReceived(self, data: bytes) -> None:
        state = self._state
        if state is ACTIVE:
            self._reader.receive(data)
            if self._body is READING:
                self._pump()
            else:
                self._update_reading()
        elif state is LINGER:
            self._arm(progress=True)  # read and dropped
        elif state is not CLOSED:
            self._reader.receive(data)
            self._serve_buffered()

    # requests

    def _serve_buffered(self) -> None:
        """Read the requests buffered, one at a time (a handler may answer at
        once, and the next request is then read by this loop, not recursively)."""
        if self._looping:
            self._again = True
            return
        self._looping = True
        try:
            self._again = True
            while self._again and self._state in (IDLE, HEAD):
                self._again = False
                self._next_request()
        finally:
            self._looping = False

    def _next_request(self) -> None:
        try:
            head = self._reader.head()
        except ProxyError as e:
            self._refuse(e)
            return
        if head is None:
            self._state = HEAD if self._reader.partial_head else IDLE
            self._arm()
            return
        request = IncomingRequest(self, head)
        self._request = request
        self._state = ACTIVE
        self._body = NO_BODY if head.length == 0 else HELD
        self._update_reading()
        self._arm()
        self.factory.handler.handle(request)

    # the body, as the request asks for it

    def read_body(self, request: IncomingRequest, sink: BodySink) -> None:
        if request is not self._request or self._body is not HELD:
            raise RuntimeError("the body was asked for twice, or after the request ended")
        self._sink = sink
        self._body = READING
        if request.expect_continue and not request.started:
            self.transport.write(CONTINUE)
        self._update_reading()
        self._arm()
        self._pump()

    def _pump(self) -> None:
        sink = self._sink
        if sink is None:
            return
        try:
            done = self._reader.body(sink.body_data)
        except ProxyError as e:
            self._body_failed(e)
            return
        if self._sink is not sink:  # the request ended while the sink took the bytes
            return
        if done:
            self._body = DONE
            self._sink = None
            self._update_reading()
            self._arm()
            sink.body_end(None)
        elif self._body is READING:
            self._arm(progress=True)

    def pause_body(self) -> None:
        if self._body is READING:
            self._body = PAUSED
            self._update_reading()
            self._arm()

    def resume_body(self) -> None:
        if self._body is PAUSED:
            self._body = READING
            self._update_reading()
            self._arm()
            self._pump()

    def body_unread(self) -> bool:
        return self._body is HELD

    def _body_failed(self, error: ProxyError) -> None:
        """The body broke its framing, grew over the limit or stalled.

        The handler lets go of its back end first (so that it does not answer
        the back end's failure), the client gets the refusal, and then the
        body's sink learns that the body broke off.
        """
        answer = status_for(error)
        log.info("{peer}: request body refused: {detail}", peer=self.peer, detail=answer.log_detail)
        self._body = FAILED
        sink, self._sink = self._sink, None
        request = self._request
        if request is not None and not request.done:
            self._give_up(request)
            if request.started:
                request.abort()
            else:
                request.keep_alive = False  # the rest of the body is never read
                request.answer_error(answer)
        if sink is not None:
            sink.body_end(answer.log_detail)

    # the response

    def send(self, data: bytes) -> None:
        if self._state is ACTIVE:
            write_now(self.transport, data)
            if self._armed is WAIT_DUE:
                self._arm(progress=True)

    def stream_from(self, producer: PushProducer) -> None:
        if self._state is ACTIVE:
            self._producer = producer
            self.transport.registerProducer(self, streaming=True)

    def stop_streaming(self) -> None:
        if self._producer is not None:
            self._producer = None
            self._write_paused = False
            if self._state is not CLOSED:
                self.transport.unregisterProducer()
                self._arm()

    def pauseProducing(self) -> None:
        self._write_paused = True
        if self._producer is not None:
            self._producer.pauseProducing()
        self._arm()

    def resumeProducing(self) -> None:
        self._write_paused = False
        if self._producer is not None:
            self._producer.resumeProducing()
        self._arm()

    def stopProducing(self) -> None:
        if self._producer is not None:
            self._producer.stopProducing()

    def request_done(self, request: IncomingRequest, *, keep_alive: bool, abort: bool) -> None:
        if request is not self._request or self._state is not ACTIVE:
            return
        self.stop_streaming()
        self._request = None
        body = self._body
        sink, self._sink = self._sink, None
        if sink is not None:
            sink.body_end("the response ended before the request body")
        if abort:
            self._state = CLOSED
            self.transport.abortConnection()
        elif body in (HELD, READING, PAUSED, FAILED):
            self._linger()
        elif not keep_alive:
            self._state = CLOSED
            self.transport.loseConnection()
        else:
            self._state = IDLE
            self._body = NO_BODY
            self._update_reading()
            if self._reader.buffered:
                self._serve_buffered()
            else:
                self._arm()

    # refusals and closing

    def _refuse(self, error: ProxyError, *, linger: bool = True) -> None:
        """Answer with a one-line error and close (after a lingering read)."""
        answer = status_for(error)
        log.info(
            "{peer}: {detail}, answered {status}",
            peer=self.peer,
            detail=answer.log_detail,
            status=answer.status,
        )
        headers, body = error_page(answer)
        lines = [b"HTTP/1.1 %d %s\r\n" % (answer.status, phrase_of(answer.status))]
        lines += [b"%s: %s\r\n" % pair for pair in headers]
        lines.append(b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(body))
        self.transport.write(b"".join(lines) + body)
        if linger:
            self._linger()
        else:
            self._state = CLOSED
            self.transport.loseConnection()

    def _linger(self) -> None:
        """Close the write side, then read and drop what still comes, for a while."""
        shut = getattr(self.transport, "loseWriteConnection", None)
        if shut is None or self.secure:  # TLS has no half-close: close it all
            self._state = CLOSED
            self.transport.loseConnection()
            return
        self._state = LINGER
        self._reader = RequestReader(0)  # what was buffered is dropped
        self._linger_until = self._clock.seconds() + self._limits.linger_time
        shut()
        self._update_reading()
        self._arm()

    def _give_up(self, request: IncomingRequest) -> None:
        """Tell the handler the request is abandoned, so it lets go of its back end."""
        gone, request.on_gone = request.on_gone, None
        if gone is not None:
            gone()

    # reading on and off

    def _update_reading(self) -> None:
        state = self._state
        if state is ACTIVE:
            body = self._body
            if body is READING:
                want = True
            elif body is HELD or body is PAUSED:
                want = False
            else:
                want = self._reader.buffered < PAUSE_AT
        else:
            want = state is not CLOSED
        if want is not self._reading:
            self._reading = want
            if want:
                self.transport.resumeProducing()
            else:
                self.transport.pauseProducing()

    # the deadline

    def _due(self) -> str:
        state = self._state
        if state is ACTIVE:
            if self._write_paused:
                return SEND_DUE
            return BODY_DUE if self._body is READING else WAIT_DUE
        if state is IDLE:
            return IDLE_DUE
        if state is HEAD:
            return HEAD_DUE
        return LINGER_DUE

    def _arm(self, *, progress: bool = False) -> None:
        """Arm the deadline of the state the connection is in, on entering it
        (and again on progress, where the deadline counts silence)."""
        if self._state is CLOSED:
            return
        due = self._due()
        if due is self._armed and not progress:
            return
        if due is HEAD_DUE and self._armed is HEAD_DUE:
            return  # a head's deadline runs from its first byte
        self._armed = due
        limits = self._limits
        if due is IDLE_DUE:
            seconds = limits.idle_timeout
        elif due is HEAD_DUE:
            seconds = limits.header_timeout
        elif due is WAIT_DUE:
            seconds = limits.answer_timeout
        elif due is BODY_DUE:
            seconds = limits.body_timeout
        elif due is SEND_DUE:
            seconds = limits.send_timeout
        else:
            left = self._linger_until - self._clock.seconds()
            seconds = max(0.0, min(limits.linger_timeout, left))
        self._deadline.set(seconds, self._expired)

    def _expired(self) -> None:
        due, self._armed = self._armed, ""
        request = self._request
        if due is IDLE_DUE or due is LINGER_DUE:
            self._state = CLOSED
            self.transport.loseConnection()
        elif due is HEAD_DUE:
            self._refuse(
                RequestTimeout(detail=f"headers not complete in {self._limits.header_timeout}s")
            )
        elif due is BODY_DUE:
            self._body_failed(
                RequestTimeout(detail=f"no body bytes for {self._limits.body_timeout}s")
            )
        elif request is None:  # cannot be: WAIT and SEND are states of a request
            self.transport.abortConnection()
        elif due is SEND_DUE:
            log.info(
                "{peer}: client read nothing for {t}s: closing",
                peer=self.peer,
                t=self._limits.send_timeout,
            )
            self._give_up(request)
            request.abort()
        else:
            self._give_up(request)
            if request.started:
                request.abort()
            else:
                limit = self._limits.answer_timeout
                request.answer_error(status_for(AnswerTimeout(detail=f"no answer in {limit}s")))


class FrontEndFactory(Factory):
    """Builds client connections that hand requests to ``handler``."""

    noisy = False

    def __init__(self, handler: RequestHandler, limits: ClientLimits, clock: IReactorTime) -> None:
        self.handler = handler
        self.limits = limits
        self.clock = clock
        self.connections: set[ClientConnection] = set()
        self._peak = 0
        self._all_closed: list[Deferred[None]] = []

    def open_connections(self) -> int:
        return len(self.connections)

    def take_peak(self) -> int:
        """The most connections open at once since the last call."""
        peak, self._peak = self._peak, len(self.connections)
        return peak

    def buildProtocol(self, addr: object) -> ClientConnection:  # noqa: ARG002 - the connection reads its peer
        return ClientConnection(self)

    def opened(self, conn: ClientConnection) -> None:
        self.connections.add(conn)
        self._peak = max(self._peak, len(self.connections))

    def connection_closed(self, conn: ClientConnection) -> None:
        self.connections.discard(conn)
        if not self.connections and self._all_closed:
            self._closed()

    def close_all(self, timeout: float) -> Deferred[None]:
        """Close every client connection once what it has to send is sent.

        At shutdown the reactor drops connections without flushing them; a
        response finished a moment before would never reach its client.
        Fires when all are closed, or after ``timeout`` seconds.
        """
        for conn in list(self.connections):
            if conn.transport is not None:
                conn.transport.loseConnection()
        if not self.connections:
            return succeed(None)
        d: Deferred[None] = Deferred()
        self._all_closed.append(d)
        call = self.clock.callLater(timeout, self._closed)
        d.addCallback(lambda _: call.cancel() if call.active() else None)
        return d

    def _closed(self) -> None:
        waiting, self._all_closed = self._all_closed, []
        for d in waiting:
            d.callback(None)
