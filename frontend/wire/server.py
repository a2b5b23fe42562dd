"""The client side of the front end: a lean, strict HTTP/1.1 server protocol.

It reads requests and hands each, head parsed and body read completely, to a
handler (:class:`frontend.proxy.FrontEnd`), then writes the handler's
response.  It is written on ``twisted.internet`` alone: ``twisted.web``'s
server costs several times the CPU per request that the relay needs, and
the proxy needs none of its resource tree, sessions or cookies.

Strict parsing is the point of a front end, so anything two parsers might
frame differently is refused before the handler sees it:

- a bare LF or CR, obsolete line folding, a malformed header name or value,
  ``Content-Length`` with ``Transfer-Encoding``, several or non-numeric
  ``Content-Length``, a transfer coding other than ``chunked``: 400;
- a request line over :data:`MAX_LINE` bytes: 414; a header line over it,
  more than :data:`MAX_HEADERS` headers or a head over :data:`MAX_HEAD`
  bytes: 431;
- a body over ``max_body_size`` (declared, or counted while chunked): 413;
- a head not complete ``header_timeout`` seconds after its first byte, or a
  body not complete ``body_timeout`` seconds after its head: 408;
- a connection beyond ``max_connections``: 503.

Each refusal is a one-line answer, a log line and a closed connection, so
nothing after it can be read as another request.  Connections idle for
``idle_timeout`` between requests are closed.
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import ISSLTransport
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure

from frontend.wire.bodies import RequestBody
from frontend.wire.chunked import ChunkedDecoder
from frontend.wire.incoming import IncomingRequest
from frontend.wire.timers import Deadline
from frontend.wire.transport import send_now

__all__ = ["ClientLimits", "ClientConnection", "FrontEndFactory"]

log = Logger()

MAX_LINE = 16384  # request line or one header line, in bytes
MAX_HEAD = 65536  # the whole request head
MAX_HEADERS = 500
SPOOL = 1 << 20  # bodies larger than this are kept in a temporary file
PAUSE_AT = 1 << 16  # pipelined bytes buffered before reading stops

_TOKEN = re.compile(rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+\Z")
_BAD_VALUE = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")
_DIGITS = re.compile(rb"[0-9]{1,18}\Z")


class ClientLimits:
    """The limits the listeners apply (mutable: a reload changes them in place)."""

    def __init__(
        self,
        header_timeout: float = 10.0,
        body_timeout: float = 300.0,
        max_connections: int = 10_000,
        max_body_size: int = 1 << 30,
        idle_timeout: float = 120.0,
    ) -> None:
        self.header_timeout = header_timeout
        self.body_timeout = body_timeout
        self.max_connections = max_connections
        self.max_body_size = max_body_size
        self.idle_timeout = idle_timeout


class _Refused(Exception):
    """A request the connection answers itself, then closes."""

    def __init__(self, status: bytes, reason: bytes, what: str) -> None:
        super().__init__(what)
        self.status = status
        self.reason = reason
        self.what = what


def _bad(what: str) -> _Refused:
    return _Refused(b"400 Bad Request", b"The request is malformed.", what)


def _too_large(what: str) -> _Refused:
    return _Refused(
        b"431 Request Header Fields Too Large", b"The request headers are too large.", what
    )


class ClientConnection(Protocol):
    """One client connection: parses requests and hands them out one by one."""

    factory: FrontEndFactory
    transport: Any

    def __init__(self) -> None:
        self._buf = b""
        self._scanned = 0  # bytes of _buf already searched for the end of the head
        self._state = "idle"  # idle, head, body, chunks, handling, closed
        self._request: IncomingRequest | None = None
        self._body_parts: list[bytes] = []
        self._body_file: Any = None
        self._body_size = 0
        self._body_left = 0
        self._decoder: ChunkedDecoder | None = None
        self._paused = False
        self._looping = False
        self._producer: Any = None
        self._deadline: Deadline | None = None  # made when the factory is set
        self._due_what = ""
        self.peer = "-"
        self.secure = False

    # connection life

    def connectionMade(self) -> None:
        if hasattr(self.transport, "setTcpNoDelay"):
            self.transport.setTcpNoDelay(True)  # small answers must not wait for ACKs
        self.peer = str(getattr(self.transport.getPeer(), "host", "-"))
        self.secure = ISSLTransport.providedBy(self.transport)
        factory = self.factory
        self._deadline = Deadline(factory.clock)
        factory.connections.add(self)
        limits = factory.limits
        if len(factory.connections) > limits.max_connections:
            log.warn("over {n} client connections: refusing one", n=limits.max_connections)
            self._refuse(
                _Refused(
                    b"503 Service Unavailable",
                    b"Too many connections; try again later.",
                    "connection over the limit",
                )
            )
            return
        self._due(limits.idle_timeout, "idle")

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self._state = "closed"
        if self._deadline is not None:
            self._deadline.stop()
        if self._body_file is not None:
            self._body_file.close()
        self.factory.connection_closed(self)
        if self._request is not None:
            self._request.gone()

    # deadlines: idle, request headers, request body (none while handling)

    def _due(self, seconds: float, what: str) -> None:
        assert self._deadline is not None
        self._due_what = what
        self._deadline.set(seconds, self._expired)

    def _no_deadline(self) -> None:
        if self._deadline is not None:
            self._deadline.clear()

    def _expired(self) -> None:
        if self._state == "closed":
            return
        what = self._due_what
        if what == "idle":
            self.transport.loseConnection()
            return
        self._refuse(_Refused(b"408 Request Timeout", b"The request did not arrive in time.", what))

    # reading

    def dataReceived(self, data: bytes) -> None:
        if self._state == "closed":
            return
        self._buf += data
        if self._state == "handling":
            if len(self._buf) > PAUSE_AT and not self._paused:
                self._paused = True
                self.transport.pauseProducing()
            return
        self._run()

    def _run(self) -> None:
        if self._looping:
            return
        self._looping = True
        try:
            while self._buf and self._state not in ("handling", "closed"):
                if not self._step():
                    break
        except _Refused as refused:
            self._refuse(refused)
        finally:
            self._looping = False

    def _step(self) -> bool:
        """Parse what the buffer holds; False when more bytes are needed."""
        if self._state == "idle":
            if self._buf[:1] in (b"\r", b"\n"):  # empty lines before a request are ignored
                self._buf = self._buf.lstrip(b"\r\n")
                if not self._buf:
                    return False
            self._state = "head"
            self._scanned = 0
            if self._buf.find(b"\r\n\r\n") == -1:
                self._due(self.factory.limits.header_timeout, "request headers")
        if self._state == "head":
            return self._read_head()
        if self._state == "body":
            return self._read_body()
        return self._read_chunks()

    def _read_head(self) -> bool:
        buf = self._buf
        end = buf.find(b"\r\n\r\n", max(0, self._scanned - 3))
        if end == -1:
            self._scanned = len(buf)
            self._check_partial_head(buf)
            return False
        if end + 4 > MAX_HEAD:
            raise _too_large("request head too large")
        head, self._buf = buf[:end], buf[end + 4 :]
        request, length, chunked = self._parse_head(head)
        self._request = request
        if length or chunked:
            limits = self.factory.limits
            if length > limits.max_body_size:
                raise _Refused(
                    b"413 Content Too Large", b"The request body is too large.", "body over limit"
                )
            if request.version == b"HTTP/1.1" and any(
                v.lower() == b"100-continue" for v in request.header(b"expect")
            ):
                self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            self._body_parts, self._body_size = [], 0
            self._body_left = length
            self._state = "chunks" if chunked else "body"
            self._decoder = ChunkedDecoder(strict=True) if chunked else None
            self._due(limits.body_timeout, "request body")
            return True
        self._dispatch()
        return True

    def _check_partial_head(self, buf: bytes) -> None:
        first = buf.find(b"\r\n")
        if first == -1:
            if len(buf) > MAX_LINE:
                raise _Refused(
                    b"414 URI Too Long", b"The request line is too long.", "request line too long"
                )
            if b"\n" in buf:
                raise _bad("bare LF in the request head")
            return
        if buf.count(b"\n") != buf.count(b"\r\n"):
            raise _bad("bare LF in the request head")
        if len(buf) - buf.rfind(b"\n") > MAX_LINE:
            raise _too_large("header line too long")
        if len(buf) > MAX_HEAD:
            raise _too_large("request head too large")

    def _parse_head(self, head: bytes) -> tuple[IncomingRequest, int, bool]:
        if head.count(b"\n") != head.count(b"\r\n"):
            raise _bad("bare LF in the request head")
        if head.count(b"\r") != head.count(b"\r\n"):
            raise _bad("bare CR in the request head")
        lines = head.split(b"\r\n")
        line = lines[0]
        if len(line) > MAX_LINE:
            raise _Refused(
                b"414 URI Too Long", b"The request line is too long.", "request line too long"
            )
        parts = line.split(b" ")
        if len(parts) != 3 or not _TOKEN.match(parts[0]) or not parts[1]:
            raise _bad("malformed request line")
        method, target, version = parts
        if version not in (b"HTTP/1.1", b"HTTP/1.0"):
            if version.startswith(b"HTTP/") and len(version) == 8:
                raise _Refused(
                    b"505 HTTP Version Not Supported",
                    b"Only HTTP/1.0 and HTTP/1.1 are served.",
                    "unsupported HTTP version",
                )
            raise _bad("malformed request line")
        if _BAD_VALUE.search(target):
            raise _bad("control bytes in the request-target")
        if len(lines) - 1 > MAX_HEADERS:
            raise _too_large("too many header lines")
        headers: list[tuple[bytes, bytes]] = []
        lengths: list[bytes] = []
        codings: list[bytes] = []
        hosts = 0
        keep_alive = version == b"HTTP/1.1"
        for line in lines[1:]:
            if len(line) > MAX_LINE:
                raise _too_large("header line too long")
            name, colon, value = line.partition(b":")
            if not colon or not _TOKEN.match(name):
                raise _bad(
                    "obsolete line folding in the request head"
                    if line[:1] in (b" ", b"\t")
                    else "malformed header line"
                )
            value = value.strip(b" \t")
            if _BAD_VALUE.search(value):
                raise _bad("control bytes in a header value")
            headers.append((name, value))
            low = name.lower()
            if low == b"content-length":
                lengths.append(value)
            elif low == b"transfer-encoding":
                codings.append(value)
            elif low == b"host":
                hosts += 1
            elif low == b"connection":
                tokens = {t.strip().lower() for t in value.split(b",")}
                if b"close" in tokens:
                    keep_alive = False
        if hosts > 1 or (hosts == 0 and version == b"HTTP/1.1"):
            raise _bad("an HTTP/1.1 request needs exactly one Host header")
        length, chunked = 0, False
        if codings:
            if lengths:
                raise _bad("both Content-Length and Transfer-Encoding")
            if len(codings) != 1 or codings[0].lower() != b"chunked":
                raise _bad("a transfer coding other than chunked")
            chunked = True
        elif lengths:
            if len(lengths) != 1 or not _DIGITS.match(lengths[0]):
                raise _bad("invalid Content-Length")
            length = int(lengths[0])
        request = IncomingRequest(self, method, target, version, headers, keep_alive)
        return request, length, chunked

    def _take_body(self, data: bytes) -> None:
        self._body_size += len(data)
        if self._body_size > self.factory.limits.max_body_size:
            raise _Refused(
                b"413 Content Too Large", b"The request body is too large.", "body over limit"
            )
        if self._body_file is not None:
            self._body_file.write(data)
            return
        self._body_parts.append(data)
        if self._body_size > SPOOL:
            self._body_file = tempfile.TemporaryFile()
            self._body_file.write(b"".join(self._body_parts))
            self._body_parts = []

    def _read_body(self) -> bool:
        take = self._buf[: self._body_left]
        self._buf = self._buf[len(take) :]
        self._body_left -= len(take)
        self._take_body(take)
        if self._body_left:
            return False
        self._end_body()
        return True

    def _read_chunks(self) -> bool:
        decoder = self._decoder
        assert decoder is not None
        try:
            rest = decoder.feed(self._buf, self._take_body)
        except ValueError as e:
            raise _bad(f"invalid chunked body: {e}") from None
        self._buf = rest
        if not decoder.done:
            return False
        self._decoder = None
        self._end_body()
        return True

    def _end_body(self) -> None:
        request = self._request
        assert request is not None
        if self._body_file is not None:
            file, self._body_file = self._body_file, None
            file.seek(0)
            request.body = RequestBody(file=file, length=self._body_size)
        elif self._body_size:
            request.body = RequestBody(b"".join(self._body_parts))
        self._body_parts = []
        self._dispatch()

    def _dispatch(self) -> None:
        request = self._request
        assert request is not None
        self._state = "handling"
        self._no_deadline()
        self.factory.handler(request)

    # writing

    def send(self, data: bytes) -> None:
        if self._state != "closed":
            send_now(self.transport, data)

    def register_producer(self, producer: Any) -> None:
        if self._state != "closed":
            self._producer = producer
            self.transport.registerProducer(producer, True)

    def unregister_producer(self) -> None:
        if self._producer is not None:
            self._producer = None
            if self._state != "closed":
                self.transport.unregisterProducer()

    def request_done(self, request: IncomingRequest, keep_alive: bool, abort: bool = False) -> None:
        if request is not self._request or self._state == "closed":
            return
        self.unregister_producer()
        self._request = None
        if request.body.file is not None:
            request.body.file.close()  # an upload still running is aborted
        if abort:
            self._state = "closed"
            self.transport.abortConnection()
            return
        if not keep_alive:
            self._state = "closed"
            self.transport.loseConnection()
            return
        self._state = "idle"
        if self._paused:
            self._paused = False
            self.transport.resumeProducing()
        if self._buf:
            self._run()
        else:
            self._due(self.factory.limits.idle_timeout, "idle")

    def _refuse(self, refused: _Refused) -> None:
        """Answer with a one-line error and close the connection."""
        log.info(
            "{peer}: {what}, answered {status}",
            peer=self.peer,
            what=refused.what,
            status=refused.status[:3].decode(),
        )
        self._state = "closed"
        self._no_deadline()
        body = b"%s %s\n" % (refused.status.split(b" ", 1)[0], refused.reason)
        self.transport.write(
            b"HTTP/1.1 %s\r\nContent-Type: text/plain; charset=utf-8\r\n"
            b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (refused.status, len(body), body)
        )
        self.transport.loseConnection()


class FrontEndFactory(Factory):
    """Builds client connections that hand requests to ``handler``."""

    protocol = ClientConnection  # type: ignore[assignment]
    noisy = False

    def __init__(
        self, handler: Callable[[IncomingRequest], None], limits: ClientLimits, clock: Any
    ) -> None:
        self.handler = handler
        self.limits = limits
        self.clock = clock
        self.connections: set[ClientConnection] = set()
        self._all_closed: list[Deferred[None]] = []

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
