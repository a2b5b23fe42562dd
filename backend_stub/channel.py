"""The stub's HTTP/1.1 layer: twisted.web's channel and request, adapted.

What differs from stock twisted.web:

- Header lines are also kept exactly as received (``raw_headers``).
- A request body is never spooled (twisted.web keeps it in memory below
  100 KB and in a temporary file above): each chunk goes into a running
  length and SHA-256 (:class:`~backend_stub.records.BodyDigest`), and only
  its first :data:`PREFIX_LIMIT` bytes are kept, in ``request.content``.
  Bodies are never parsed into ``request.args``.
- ``Expect: 100-continue`` is answered as the server's expect mode says
  (:mod:`backend_stub.expect`), not always at once.  A request answered
  before its body ("early") ends the connection: the answer carries
  ``Connection: close``; whatever the client sends afterwards (the body
  anyway, more requests) is read and thrown away; once the answer is out the
  write side is shut (a lingering close, so that a client still sending gets
  the answer rather than a reset), and the connection is dropped when the
  client closes it or after :attr:`StubChannel.linger_seconds`.
- A request whose connection is lost before its body is complete is still
  recorded, with ``body_complete`` False.
"""

from __future__ import annotations

from io import BytesIO
from typing import Any, Protocol

from twisted.internet.interfaces import IDelayedCall
from twisted.internet.protocol import connectionDone
from twisted.python.failure import Failure
from twisted.web.http import HTTPChannel, parse_qs
from twisted.web.http import Request as HTTPRequest
from twisted.web.resource import Resource
from twisted.web.server import Request, Site

from backend_stub.expect import wants_continue
from backend_stub.records import BodyDigest, Record, RequestHead
from backend_stub.response import Clock
from backend_stub.topology import ExpectMode

__all__ = [
    "CONTINUE",
    "LINGER_SECONDS",
    "PREFIX_LIMIT",
    "Backend",
    "RequestHead",
    "StubChannel",
    "StubRequest",
    "StubSite",
]

PREFIX_LIMIT = 64 * 1024
LINGER_SECONDS = 5.0
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


class Backend(Protocol):
    """What the HTTP layer asks of the stub server behind it."""

    @property
    def expect_mode(self) -> ExpectMode:
        """How the server answers ``Expect: 100-continue`` now."""

    def answers_before_body(self, request: StubRequest) -> bool:
        """Whether, judging from its head, *request* gets an answer other
        than success (which a deciding server then sends at once)."""

    def record(self, request: StubRequest) -> Record:
        """Record *request* as received so far."""


class StubRequest(Request):
    """A request that keeps its raw header lines and only digests its body.

    Twisted's ``Headers`` canonicalises names and groups repeated headers;
    ``raw_headers`` keeps name case, order and repetition.  ``head`` is the
    request line (known before the body), ``body`` the running digest of the
    body, ``expect`` the ``Expect`` header as sent, ``continued`` whether
    ``100 Continue`` was sent, ``early`` whether the answer was decided
    before the body, ``record`` the request's record once made.
    """

    def __init__(self, channel: HTTPChannel, *args: object, **kwargs: object) -> None:
        Request.__init__(self, channel, *args, **kwargs)
        self.raw_headers: list[tuple[bytes, bytes]] = []
        self.head: RequestHead | None = None
        self.body = BodyDigest()
        self._prefix = BytesIO()  # the body's first bytes: ``content`` once the body starts
        self.expect: bytes | None = None
        self.continued = False
        self.early = False
        self.record: Record | None = None
        self.backend: Backend | None = None

    def gotLength(self, _length: int | None) -> None:
        """Keep the body's first bytes in memory, never in a temporary file."""
        self.content = self._prefix

    def handleContentChunk(self, data: bytes) -> None:
        """Digest one chunk of the body; keep it only within the prefix."""
        self.body.update(data)
        room = PREFIX_LIMIT - self._prefix.tell()
        if room > 0:
            self._prefix.write(data[:room])

    def requestReceived(self, command: bytes, path: bytes, version: bytes) -> None:
        """The body is complete (or the answer comes before it): process.

        As twisted.web's, except that the body is never parsed as a form
        (only its prefix is kept, and no stub resource reads forms).
        """
        if not self.early:
            self.body.complete = True
        if self.content is not None:
            self.content.seek(0)
        self.method, self.uri, self.clientproto = command, path, version
        self.path, sep, query = path.partition(b"?")
        self.args = parse_qs(query, 1) if sep else {}
        self.process()

    def connectionLost(self, reason: Failure) -> None:
        """Record a request lost before its body was complete, then clean up."""
        if self.head is not None and self.record is None and self.backend is not None:
            self.backend.record(self)
        Request.connectionLost(self, reason)


class StubChannel(HTTPChannel):
    """An HTTP channel that records raw header lines, tracks its connection
    in the site and answers ``Expect: 100-continue`` as its server says."""

    linger_seconds = LINGER_SECONDS

    def __init__(self) -> None:
        HTTPChannel.__init__(self)
        self._at_request_line = True
        self._request_line = b""
        self.discarding = False  # answered before the body: input is thrown away
        self._linger: IDelayedCall | None = None  # while a lingering close waits

    def connectionMade(self) -> None:
        HTTPChannel.connectionMade(self)
        site = getattr(self, "site", None)
        if isinstance(site, StubSite):
            site.connections.add(self)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        if self._linger is not None and self._linger.active():
            self._linger.cancel()
        self._linger = None
        site = getattr(self, "site", None)
        if isinstance(site, StubSite):
            site.connections.discard(self)
        HTTPChannel.connectionLost(self, reason)

    def lineReceived(self, line: bytes) -> None:
        # Keep the request line: twisted.web tells it only with the body.
        if self._at_request_line and line:
            self._at_request_line = False
            self._request_line = line
        HTTPChannel.lineReceived(self, line)

    def headerReceived(self, line: bytes) -> bool:
        ok: bool = HTTPChannel.headerReceived(self, line)
        if ok:
            request = self.requests[-1]
            name, value = line.split(b":", 1)
            if isinstance(request, StubRequest):
                request.raw_headers.append((name, value.strip(b" \t")))
        return ok

    def allHeadersReceived(self) -> None:
        """Prepare for the body; send ``100 Continue`` or answer at once.

        The first three steps are twisted.web's own; its unconditional
        ``100 Continue`` is replaced by the server's decision.
        """
        request = self.requests[-1]
        parts = self._request_line.split()
        head = RequestHead(parts[0], parts[1], parts[2])
        request.parseCookies()
        self.persistent = self.checkPersistence(request, head.version)
        request.gotLength(self.length)
        site = getattr(self, "site", None)
        if not isinstance(request, StubRequest) or not isinstance(site, StubSite):
            return
        request.head = head
        request.backend = site.backend
        values = request.requestHeaders.getRawHeaders(b"Expect")
        request.expect = b", ".join(values) if values else None
        if not wants_continue(values[0] if values else None, head.version):
            return
        if site.backend.expect_mode == "blind":
            self._continue(request)
        elif self.length == 0:
            pass  # no body to wait for: the answer follows at once
        elif site.backend.answers_before_body(request):
            self._answer_early(request, head)
        else:
            self._continue(request)

    def _continue(self, request: StubRequest) -> None:
        request.continued = True
        transport: Any = self.transport
        transport.write(CONTINUE)

    def _answer_early(self, request: StubRequest, head: RequestHead) -> None:
        self.persistent = False
        self.discarding = True
        request.early = True
        request.responseHeaders.setRawHeaders(b"Connection", [b"close"])
        request.requestReceived(head.method, head.uri, head.version)

    def allContentReceived(self) -> None:
        self._at_request_line = True
        HTTPChannel.allContentReceived(self)

    def rawDataReceived(self, data: bytes) -> None:
        if not self.discarding:
            HTTPChannel.rawDataReceived(self, data)

    def loseConnection(self) -> None:
        """Close; after an early answer, linger (see the module docstring)."""
        if self._linger is not None:
            return
        transport: Any = self.transport
        half_close = getattr(transport, "loseWriteConnection", None)
        if not self.discarding or half_close is None:
            HTTPChannel.loseConnection(self)
            return
        # Keep reading (and throwing away) whatever the client still sends,
        # also if a full send buffer had paused reading: the channel no
        # longer produces, so nothing would resume it.
        transport.unregisterProducer()
        transport.resumeProducing()
        half_close()
        self._linger = self.callLater(self.linger_seconds, self._linger_over)

    def _linger_over(self) -> None:
        self._linger = None
        transport: Any = self.transport
        if transport is not None:
            transport.abortConnection()


class StubSite(Site):
    """A Site whose channels are :class:`StubChannel` and known to the site."""

    # Plain HTTP/1.1 channels: the stub never negotiates HTTP/2, so the
    # generic HTTP/1.1-or-2 wrapper that Site builds by default is not needed.
    protocol = StubChannel  # type: ignore[assignment]  # typed as that wrapper's factory
    noisy = False

    def __init__(self, resource: Resource, reactor: Clock, backend: Backend) -> None:
        Site.__init__(self, resource, requestFactory=StubRequest, reactor=reactor)
        self.backend = backend
        self.connections: set[StubChannel] = set()

    def log(self, request: HTTPRequest) -> None:
        """Write no access log line: the resource logs each request, also
        those that never finish (cut, hang)."""
