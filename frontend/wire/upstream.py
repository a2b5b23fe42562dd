"""A lean HTTP/1.1 client for the back ends, on ``twisted.internet`` alone.

``twisted.web``'s ``Agent`` spends several Deferreds, a ``Headers`` object and
producer wrappers on every request.  :class:`Upstream` keeps a LIFO pool of
idle connections per server, writes a request in one ``transport.write`` (a
large body is then streamed from its file) and parses the answer with
``bytes.find`` and ``partition``.  One Deferred per request fires with the
:class:`BackendResponse` once its head is parsed; the body then goes to a
:class:`BodySink`, de-chunked, with flow control.  Response heads must end
their lines with CRLF (a bare CR or LF is refused).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import IO, Any

from twisted.internet import error as ierror
from twisted.internet.abstract import isIPAddress, isIPv6Address
from twisted.internet.defer import Deferred, fail
from twisted.internet.endpoints import HostnameEndpoint, TCP4ClientEndpoint, TCP6ClientEndpoint
from twisted.internet.interfaces import IPullProducer
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from frontend.errors import BackendFailed, GatewayTimeout
from frontend.wire.bodies import BodySink, RequestBody
from frontend.wire.chunked import ChunkedDecoder
from frontend.wire.response_head import (
    CHUNKED,
    LENGTH,
    MAX_HEAD,
    UNTIL_CLOSE,
    Malformed,
    framing,
    parse_head,
)
from frontend.wire.timers import Deadline
from frontend.wire.transport import send_now

__all__ = ["BackendResponse", "Upstream"]

log = Logger()

_SEND_CHUNK = 64 * 1024
_NO_LENGTH_METHODS = frozenset((b"GET", b"HEAD", b"DELETE", b"OPTIONS", b"TRACE", b"CONNECT"))
_RETRYABLE_METHODS = frozenset((b"GET", b"HEAD", b"OPTIONS", b"TRACE"))
_COMPLETE = (True, "")
_IDLE, _WAITING, _BODY, _CLOSED = range(4)  # connection states


class BackendResponse:
    """One exchange with a back end: the pending request, then its response.

    ``headers`` are the raw pairs as received, framing headers included;
    ``length`` is 0 when there is no body, None when chunked or close-delimited.
    """

    __slots__ = (
        *("code", "phrase", "headers", "length", "_server", "_key", "_request", "_body"),
        *("_retry", "_d", "_connecting", "_conn", "_outcome", "_rest", "_delivered"),
    )

    def __init__(
        self, server: str, key: str, request: bytes, body: RequestBody, retry: bool
    ) -> None:
        self.code = 0
        self.phrase = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.length: int | None = None
        self._server, self._key = server, key
        self._request = request  # head (and small body) bytes, kept for a retry
        self._body = body
        self._retry = retry
        self._d: Deferred[BackendResponse] | None = None
        self._connecting: Deferred[Any] | None = None
        self._conn: _Connection | None = None
        self._outcome = _COMPLETE  # how the body ended if it did before deliver_body
        self._rest = b""  # a close-delimited body that ended before deliver_body
        self._delivered = False

    def header(self, name: bytes) -> list[bytes]:
        """All values of header ``name`` (given lowercase)."""
        n = len(name)
        return [v for k, v in self.headers if len(k) == n and k.lower() == name]

    def deliver_body(self, sink: BodySink) -> None:
        """Stream the body to ``sink``; what was already received is given at once."""
        if self._delivered:
            raise RuntimeError("deliver_body called twice")
        self._delivered = True
        if self._conn is not None:
            self._conn._deliver(sink)
            return
        if self._rest:
            sink.body_data(self._rest)
            self._rest = b""
        sink.body_end(*self._outcome)

    def pause(self) -> None:
        """Stop reading the back-end connection."""
        if self._conn is not None:
            self._conn._pause(True)

    def resume(self) -> None:
        """Read the back-end connection again."""
        if self._conn is not None:
            self._conn._pause(False)

    def abort(self) -> None:
        """Abort the connection; a sink is told ``body_end(False, "aborted")``."""
        if self._conn is not None:
            self._conn._end_body(False, "aborted", False)

    def _fire(self, result: BackendResponse | BaseException | Failure) -> None:
        d, self._d = self._d, None
        if d is None:
            return
        if isinstance(result, BackendResponse):
            d.callback(result)
        else:
            d.errback(result)

    def _cancel(self, d: Deferred[BackendResponse]) -> None:
        self._d = None  # Deferred.cancel then fails it with CancelledError
        if self._connecting is not None:
            connecting, self._connecting = self._connecting, None
            connecting.cancel()
        elif self._conn is not None:
            conn = self._conn
            conn._detach()
            conn._close(abort=True)

    def _connected(self, conn: _Connection) -> None:
        self._connecting = None
        if self._d is None:
            conn.transport.loseConnection()
        else:
            conn._start(self, reused=False)

    def _connect_failed(self, failure: Failure) -> None:
        self._connecting = None
        self._fire(failure)  # a no-op once cancelled


@implementer(IPullProducer)
class _FileProducer:
    """Writes exactly ``length`` bytes of a body file as the connection drains.

    Each chunk written restarts the response timeout: a large upload is timed
    by its progress, not its total duration.
    """

    __slots__ = ("_conn", "_file", "_left")

    def __init__(self, conn: _Connection, file: IO[bytes], length: int) -> None:
        self._conn, self._file, self._left = conn, file, length
        file.seek(0)

    def resumeProducing(self) -> None:
        conn = self._conn
        try:
            chunk = self._file.read(min(_SEND_CHUNK, self._left))
        except (OSError, ValueError):
            chunk = b""
        if not chunk:  # the file is shorter than announced: the request is broken
            self.stopProducing()
            conn.transport.abortConnection()
            return
        self._left -= len(chunk)
        conn.transport.write(chunk)
        if conn._deadline.pending:
            conn._deadline.set(conn._up._response_timeout, conn._timed_out)
        if not self._left:
            conn._producer = None
            conn.transport.unregisterProducer()

    def stopProducing(self) -> None:
        self._left = 0
        if self._conn._producer is self:
            self._conn._producer = None


class _Connection(Protocol):
    """One back-end connection: one exchange at a time, then back to the pool."""

    transport: Any

    def __init__(self, upstream: Upstream) -> None:
        self._up = upstream
        self._key = ""
        self._state = _CLOSED  # until the first request
        self._ex: BackendResponse | None = None
        self._sink: BodySink | None = None
        self._buf = b""  # head bytes so far, or body bytes not yet delivered
        self._reused = self._got = False  # _got: a byte of the response arrived
        # the response timeout, or the idle timeout while pooled
        self._deadline = Deadline(upstream._reactor)
        self._producer: _FileProducer | None = None
        self._mode = LENGTH
        self._left = 0
        self._decoder: ChunkedDecoder | None = None
        self._keep = False
        self._held = False  # paused because nobody reads the body yet
        self._paused = False  # paused by the caller

    def connectionMade(self) -> None:
        self._up.connections_made += 1
        self.transport.setTcpNoDelay(True)

    def _start(self, ex: BackendResponse, reused: bool) -> None:
        self._key, self._ex, ex._conn = ex._key, ex, self
        self._state, self._reused, self._got = _WAITING, reused, False
        up = self._up
        self._deadline.set(up._response_timeout, self._timed_out)
        send_now(self.transport, ex._request)
        body = ex._body
        if body.data is None and body.file is not None and body.length:
            self._producer = _FileProducer(self, body.file, body.length)
            self.transport.registerProducer(self._producer, False)

    def _detach(self) -> BackendResponse | None:
        """Part the connection from its exchange; stop the response timer."""
        ex, self._ex, self._sink, self._decoder = self._ex, None, None, None
        if ex is not None:
            ex._conn = None
        self._deadline.clear()
        return ex

    def dataReceived(self, data: bytes) -> None:
        try:
            state = self._state
            if state == _BODY:
                if self._sink is not None:
                    self._feed(data)
                    return
                self._buf += data
                if not self._held:
                    self._held = True
                    if not self._paused:
                        self.transport.pauseProducing()
            elif state == _WAITING:
                self._got = True
                self._head(data)
            elif state == _IDLE:  # nothing was asked: a confused back end
                self._close(abort=True)
        except Exception as e:
            self._crash(e)

    def _head(self, data: bytes) -> None:
        buf = self._buf + data if self._buf else data
        start = max(0, len(self._buf) - 3)
        while True:
            end = buf.find(b"\r\n\r\n", start)
            if end < 0 or end > MAX_HEAD:
                if len(buf) > MAX_HEAD:
                    raise Malformed("response head over 64 KiB")
                self._buf = buf
                return
            v11, code, phrase, headers = parse_head(buf[:end])
            buf, start = buf[end + 4 :], 0
            if code >= 200:
                break
            if code == 101 or code < 100:
                raise Malformed(f"unexpected status {code}")
        ex = self._ex
        assert ex is not None
        no_body = code == 204 or code == 304 or ex._request.startswith(b"HEAD ")
        mode, length, keep = framing(headers, no_body, v11)
        ex.code, ex.phrase, ex.headers = code, phrase, headers
        ex.length = None if length < 0 else length
        if length == 0:
            self._detach()
            self._buf = b""
            if keep and not buf and self._producer is None:
                self._up._release(self)
            else:
                self._close()
        else:
            self._deadline.clear()
            self._state, self._mode, self._keep = _BODY, mode, keep
            self._left, self._buf = length, buf
            self._decoder = ChunkedDecoder() if mode == CHUNKED else None
        ex._fire(ex)

    def _deliver(self, sink: BodySink) -> None:
        self._sink = sink
        buf, self._buf = self._buf, b""
        if self._held:
            self._held = False
            if not self._paused:
                self.transport.resumeProducing()
        if buf:
            try:
                self._feed(buf)
            except Exception as e:
                self._crash(e)

    def _feed(self, data: bytes) -> None:
        mode = self._mode
        if mode == LENGTH:
            left, n = self._left, len(data)
            if n < left:
                self._left = left - n
                self._emit(data)
                return
            self._left = 0
            self._emit(data if n == left else data[:left])
            self._end_body(True, "", self._keep and n == left)
        elif mode == CHUNKED:
            decoder = self._decoder
            assert decoder is not None
            try:
                rest = decoder.feed(data, self._emit)
            except ValueError as e:
                self._end_body(False, f"bad chunked body: {e}", False)
                return
            if decoder.done:
                self._end_body(True, "", self._keep and not rest)
        else:
            self._emit(data)

    def _emit(self, data: bytes) -> None:
        if self._sink is not None:  # None once aborted from within body_data
            self._sink.body_data(data)

    def _end_body(self, complete: bool, reason: str, reusable: bool) -> None:
        """The body is over: pool or close the connection, then tell the sink."""
        sink = self._sink
        ex = self._detach()
        if ex is None:
            return
        if reusable and self._state == _BODY and self._producer is None:
            if self._held or self._paused:
                self._held = self._paused = False
                self.transport.resumeProducing()
            self._up._release(self)
        elif self._state != _CLOSED:
            self._close(abort=not complete)
        if sink is None:
            ex._outcome = (complete, reason)
            ex._rest = self._buf if complete else b""
        self._buf = b""
        if sink is not None:
            try:
                sink.body_end(complete, reason)
            except Exception:
                log.failure("a body sink failed at the end of a back-end response")

    def _pause(self, pause: bool) -> None:
        if self._paused is not pause:
            self._paused = pause
            if not self._held:
                if pause:
                    self.transport.pauseProducing()
                else:
                    self.transport.resumeProducing()

    def _timed_out(self) -> None:
        ex = self._detach()
        self._close(abort=True)
        if ex is not None:
            t = self._up._response_timeout
            ex._fire(GatewayTimeout(detail=f"{ex._server}: no response in {t}s"))

    def _crash(self, exc: Exception) -> None:
        detail = str(exc) if isinstance(exc, Malformed) else f"internal error: {exc!r}"
        if self._state == _WAITING:
            ex = self._detach()
            self._close(abort=True)
            if ex is not None:
                ex._fire(BackendFailed(detail=f"{ex._server}: {detail}"))
        elif self._state == _BODY:
            self._end_body(False, detail, False)
        elif self._state == _IDLE:
            self._close(abort=True)

    def _close(self, abort: bool = False) -> None:
        """Close the connection (it is then never pooled again)."""
        if self._state == _IDLE:
            self._up._forget(self)
        self._state = _CLOSED
        self._deadline.stop()
        if abort or self._producer is not None:
            self.transport.abortConnection()
        else:
            self.transport.loseConnection()

    def _expire(self) -> None:
        self._close()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        state, self._state, self._producer = self._state, _CLOSED, None
        self._deadline.stop()
        if state == _IDLE:
            self._up._forget(self)
            self._detach()
        elif state == _WAITING:
            ex = self._detach()
            assert ex is not None
            if self._reused and not self._got and ex._retry:
                ex._retry = False  # once: it was a stale pooled connection
                self._up._connect(ex)
                return
            why = reason.getErrorMessage()
            ex._fire(BackendFailed(detail=f"{ex._server}: connection lost before the head ({why})"))
        elif state == _BODY:
            if self._mode == UNTIL_CLOSE and reason.check(ierror.ConnectionDone):
                self._end_body(True, "", False)
            else:
                self._end_body(False, f"connection lost: {reason.getErrorMessage()}", False)


class _ConnectionFactory(Factory):
    noisy = False  # no log line per connection

    def __init__(self, upstream: Upstream) -> None:
        self.upstream = upstream

    def buildProtocol(self, addr: Any) -> _Connection:
        return _Connection(self.upstream)


class Upstream:
    """Sends requests to back ends by server name, over plain HTTP/1.1 on ``port``.

    ``hosts`` maps server names to IP addresses; other names are resolved by
    the reactor, never blocking.  Idle connections are kept per server (at
    most ``max_idle_per_backend``), each for ``idle_timeout`` seconds.
    """

    def __init__(
        self,
        reactor: Any,
        *,
        port: int,
        connect_timeout: float,
        response_timeout: float,
        hosts: Mapping[str, str],
        max_idle_per_backend: int,
        idle_timeout: float,
    ) -> None:
        self._reactor = reactor
        self._port = port
        self._connect_timeout = connect_timeout
        self._response_timeout = response_timeout
        self._hosts = {k.lower(): v for k, v in hosts.items()}
        self._max_idle = max_idle_per_backend
        self._idle_timeout = idle_timeout
        self._idle: dict[str, list[_Connection]] = {}
        self._factory = _ConnectionFactory(self)
        self.connections_made = 0

    def send(
        self,
        server: str,
        method: bytes,
        target: bytes,
        headers: list[tuple[bytes, bytes]],
        body: RequestBody,
    ) -> Deferred[BackendResponse]:
        """Send one request; fires with the response once its head is parsed.

        Fails with the endpoint's connect errors, :class:`GatewayTimeout` when
        no head arrives in time, :class:`BackendFailed` when the exchange breaks.
        """
        parts = [method, b" ", target, b" HTTP/1.1\r\n"]
        for name, value in headers:
            parts += (name, b": ", value, b"\r\n")
        if body.length:
            parts.append(b"Content-Length: %d\r\n\r\n" % body.length)
        else:
            parts.append(b"\r\n" if method in _NO_LENGTH_METHODS else b"Content-Length: 0\r\n\r\n")
        if body.data:
            parts.append(body.data)
        key = server.lower()
        retry = not body.length and method in _RETRYABLE_METHODS
        ex = BackendResponse(server, key, b"".join(parts), body, retry)
        d: Deferred[BackendResponse] = Deferred(ex._cancel)
        ex._d = d
        idle = self._idle.get(key)
        if idle:
            conn = idle.pop()
            conn._start(ex, reused=True)
        else:
            self._connect(ex)
        return d

    def _connect(self, ex: BackendResponse) -> None:
        address = self._hosts.get(ex._key, ex._key)
        reactor, port, timeout = self._reactor, self._port, self._connect_timeout
        endpoint: Any
        if isIPAddress(address):
            endpoint = TCP4ClientEndpoint(reactor, address, port, timeout=timeout)
        elif isIPv6Address(address):
            endpoint = TCP6ClientEndpoint(reactor, address, port, timeout=timeout)
        else:
            try:
                endpoint = HostnameEndpoint(reactor, address.encode("idna"), port, timeout=timeout)
            except UnicodeError:
                ex._fire(ierror.DNSLookupError(f"bad host name {address!r}"))
                return
        try:
            connecting = endpoint.connect(self._factory)
        except Exception as e:
            connecting = fail(e)
        ex._connecting = connecting
        connecting.addCallbacks(ex._connected, ex._connect_failed)

    def _release(self, conn: _Connection) -> None:
        """An exchange finished cleanly on ``conn``: keep it idle, or close it."""
        if self._max_idle <= 0:
            conn._close()
            return
        idle = self._idle.setdefault(conn._key, [])
        if len(idle) >= self._max_idle:
            idle.pop(0)._close()  # the oldest is nearest the back end's own timeout
        conn._state = _IDLE
        conn._deadline.set(self._idle_timeout, conn._expire)
        idle.append(conn)

    def _forget(self, conn: _Connection) -> None:
        idle = self._idle.get(conn._key)
        if idle is not None and conn in idle:
            idle.remove(conn)

    def close_idle(self) -> None:
        """Close every pooled idle connection (at stop and reload)."""
        pools, self._idle = self._idle, {}
        for idle in pools.values():
            for conn in idle:
                conn._close()

    def idle_count(self, server: str) -> int:
        """How many idle connections to ``server`` are pooled."""
        return len(self._idle.get(server.lower(), ()))
