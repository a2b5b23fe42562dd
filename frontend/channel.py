"""Client connections: limits that keep slow or greedy clients from hurting others.

- ``header_timeout``: a request's line and headers must arrive within this
  many seconds of its first byte (slow-headers attacks send a byte now and
  then, which an idle timeout never catches).
- ``body_timeout``: a request body must arrive completely within this many
  seconds of the end of its headers.
- the Site's ``timeout``: a connection idle this long (between requests, or
  with nothing arriving) is closed.
- ``max_connections``: beyond this many open client connections, a new one is
  answered 503 and closed at once.
- ``max_body_size``: a declared or received body larger than this is
  answered 413 before any of it is forwarded.

Each refusal is a one-line answer and a log line; the connection is then
closed, so nothing after it can be read as another request.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IDelayedCall
from twisted.internet.protocol import connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.http import HTTPChannel
from twisted.web.server import Request, Site

__all__ = ["ClientLimits", "FrontEndChannel", "LimitedRequest", "apply_limits"]

log = Logger()


class ClientLimits:
    """The limits one Site applies (mutable: a reload changes them in place)."""

    def __init__(
        self,
        header_timeout: float = 10.0,
        body_timeout: float = 300.0,
        max_connections: int = 10_000,
        max_body_size: int = 1 << 30,
    ) -> None:
        self.header_timeout = header_timeout
        self.body_timeout = body_timeout
        self.max_connections = max_connections
        self.max_body_size = max_body_size
        self.channels: set[Any] = set()  # the open client connections
        self._all_closed: list[Deferred[None]] = []

    def close_all(self, timeout: float, clock: Any) -> Deferred[None]:
        """Close every client connection once what it has to send is sent.

        At shutdown the reactor drops connections without flushing them; a
        response finished a moment before would never reach its client.
        Fires when all are closed, or after ``timeout`` seconds.
        """
        for channel in list(self.channels):
            if channel.transport is not None:
                channel.transport.loseConnection()
        if not self.channels:
            return succeed(None)
        d: Deferred[None] = Deferred()
        self._all_closed.append(d)
        call = clock.callLater(timeout, self._closed)
        d.addCallback(lambda _: call.cancel() if call.active() else None)
        return d

    def _closed(self) -> None:
        waiting, self._all_closed = self._all_closed, []
        for d in waiting:
            d.callback(None)

    def channel_closed(self, channel: Any) -> None:
        self.channels.discard(channel)
        if not self.channels and self._all_closed:
            self._closed()


def _refuse(transport: Any, status: bytes, reason: bytes) -> None:
    """Write a one-line answer straight to the connection and close it."""
    body = b"%s %s\n" % (status.split(b" ", 1)[0], reason)
    transport.write(
        b"HTTP/1.1 %s\r\nContent-Type: text/plain; charset=utf-8\r\n"
        b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (status, len(body), body)
    )
    transport.loseConnection()


def _limits(request: Request) -> ClientLimits:
    channel: Any = request.channel
    limits: ClientLimits = channel.site.limits
    return limits


class LimitedRequest(Request):
    """Refuses bodies over the Site's ``max_body_size`` with 413."""

    _received = 0
    _refused = False

    def _too_large(self) -> None:
        self._refused = True
        peer = getattr(self.getClientAddress(), "host", "-")
        log.info("{peer}: request body over the size limit, answered 413", peer=peer)
        if self.channel is not None and self.channel.transport is not None:
            _refuse(
                self.channel.transport, b"413 Content Too Large", b"The request body is too large."
            )

    def gotLength(self, length: int | None) -> None:
        limits = _limits(self)
        if length is not None and length > limits.max_body_size:
            self._too_large()
            return
        super().gotLength(length)

    def handleContentChunk(self, data: bytes) -> None:
        if self._refused:
            return
        self._received += len(data)
        limits = _limits(self)
        if self._received > limits.max_body_size:
            self._too_large()
            return
        super().handleContentChunk(data)

    def requestReceived(self, command: bytes, path: bytes, version: bytes) -> None:
        if not self._refused:
            super().requestReceived(command, path, version)


class FrontEndChannel(HTTPChannel):
    """An HTTP/1.1 channel with header and body deadlines and a connection cap."""

    site: Any
    _deadline: IDelayedCall | None = None
    _phase = "idle"

    def connectionMade(self) -> None:
        limits: ClientLimits = self.site.limits
        limits.channels.add(self)
        if len(limits.channels) > limits.max_connections:
            log.warn("over {n} client connections: refusing one", n=limits.max_connections)
            self._phase = "refused"
            _refuse(
                self.transport,
                b"503 Service Unavailable",
                b"Too many connections; try again later.",
            )
            return
        super().connectionMade()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.site.limits.channel_closed(self)
        self._disarm()
        super().connectionLost(reason)

    def _arm(self, seconds: float, what: str) -> None:
        self._disarm()
        call_later: Any = self.callLater  # set by the Site: the reactor's callLater
        self._deadline = call_later(seconds, self._expired, what)

    def _disarm(self) -> None:
        if self._deadline is not None and self._deadline.active():
            self._deadline.cancel()
        self._deadline = None

    def _expired(self, what: str) -> None:
        self._deadline = None
        self._phase = "refused"
        transport: Any = self.transport
        peer = getattr(transport.getPeer(), "host", "-")
        log.info("{peer}: {what} too slow, answered 408", peer=peer, what=what)
        _refuse(self.transport, b"408 Request Timeout", b"The request did not arrive in time.")

    def dataReceived(self, data: bytes) -> None:
        if self._phase == "refused":
            return
        if self._phase == "idle":
            self._phase = "headers"
            self._arm(self.site.limits.header_timeout, "request headers")
        if self._phase == "headers" and not self._crlf_only(data):
            self._bad("bare LF in the request head")
            return
        super().dataReceived(data)

    _tail = b""  # the last bytes of the request head seen so far

    def _crlf_only(self, data: bytes) -> bool:
        """Every LF in the request head ends a CRLF (no bare-LF lines).

        Only the head is checked: a body may hold any bytes.
        """
        seen = self._tail + data
        end = seen.find(b"\r\n\r\n")
        head = seen if end == -1 else seen[: end + 4]
        at = head.find(b"\n", len(self._tail) - 1 if self._tail else 0)
        while at != -1:
            if at == 0 or head[at - 1 : at] != b"\r":
                return False
            at = head.find(b"\n", at + 1)
        self._tail = b"" if end != -1 else seen[-3:]
        return True

    def lineReceived(self, line: bytes) -> None:
        self._lines += 1
        if b"\r" in line:
            self._bad("bare CR in the request head")
        elif line[:1] in (b" ", b"\t"):
            self._bad("obsolete line folding in the request head")
        else:
            super().lineReceived(line)

    def _bad(
        self,
        what: str,
        status: bytes = b"400 Bad Request",
        reason: bytes = b"The request is malformed.",
    ) -> None:
        self._phase = "refused"
        self._disarm()
        transport: Any = self.transport
        peer = getattr(transport.getPeer(), "host", "-")
        log.info(
            "{peer}: {what}, answered {status}", peer=peer, what=what, status=status[:3].decode()
        )
        _refuse(transport, status, reason)

    _lines = 0  # lines of the current request head so far

    def lineLengthExceeded(self, line: bytes) -> None:
        if self._lines == 0:
            self._bad(
                "request line too long", b"414 URI Too Long", b"The request line is too long."
            )
        else:
            self._bad(
                "header line too long",
                b"431 Request Header Fields Too Large",
                b"A request header is too long.",
            )

    def allHeadersReceived(self) -> None:
        self._phase = "body"
        if self.length == 0:
            self._disarm()  # no body to wait for: allContentReceived comes next
        else:
            self._arm(self.site.limits.body_timeout, "request body")
        super().allHeadersReceived()

    def allContentReceived(self) -> None:
        self._phase = "handling"
        self._disarm()
        super().allContentReceived()

    def requestDone(self, request: Any) -> None:
        self._phase = "idle"
        self._lines = 0
        super().requestDone(request)


def apply_limits(site: Site, limits: ClientLimits, idle_timeout: float) -> None:
    """Make ``site`` use the limited channel and request classes."""
    site.limits = limits  # type: ignore[attr-defined]
    site.protocol = FrontEndChannel  # type: ignore[assignment]
    site.requestFactory = LimitedRequest
    site.timeOut = idle_timeout
