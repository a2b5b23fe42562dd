"""One stub back-end server: a twisted.web Site on its own address.

The server records every request as it arrives (before any fault delays
it), decides the reply with :func:`backend_stub.routing.route` and sends it
through :class:`backend_stub.response.ResponseSender` under the fault in
force.  The ``refuse`` fault closes the listener and drops every open
connection (a server that went down keeps no connections alive); leaving it
listens again on the same address and port.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from twisted.internet.defer import Deferred, DeferredLock, ensureDeferred, maybeDeferred
from twisted.internet.endpoints import TCP4ServerEndpoint
from twisted.internet.protocol import connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.http import HTTPChannel
from twisted.web.http import Request as HTTPRequest
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request, Site

from backend_stub.faults import NO_FAULT, Fault
from backend_stub.records import RequestLog, body_digest, make_record
from backend_stub.response import Clock, PreparedResponse, ResponseSender
from backend_stub.routing import (
    EchoReply,
    SinkReply,
    StreamReply,
    TextReply,
    request_path,
    route,
)
from backend_stub.topology import FolderSpec, ServerSpec

__all__ = ["StubChannel", "StubRequest", "StubResource", "StubServer", "StubSite"]

_TEXT = b"text/plain; charset=utf-8"
_JSON = b"application/json"


class StubRequest(Request):
    """A request that also keeps its header lines exactly as received.

    Twisted's ``Headers`` canonicalises names and groups repeated headers;
    ``raw_headers`` keeps name case, order and repetition.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.raw_headers: list[tuple[bytes, bytes]] = []


class StubChannel(HTTPChannel):
    """An HTTP channel that records raw header lines and tracks connections."""

    def connectionMade(self) -> None:
        super().connectionMade()
        site = getattr(self, "site", None)
        if isinstance(site, StubSite):
            site.connections.add(self)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        site = getattr(self, "site", None)
        if isinstance(site, StubSite):
            site.connections.discard(self)
        super().connectionLost(reason)

    def headerReceived(self, line: bytes) -> bool:
        ok: bool = super().headerReceived(line)
        if ok:
            request = self.requests[-1]
            name, value = line.split(b":", 1)
            if isinstance(request, StubRequest):
                request.raw_headers.append((name, value.strip(b" \t")))
        return ok


class StubSite(Site):
    """A Site whose channels are :class:`StubChannel` and known to the site."""

    # Plain HTTP/1.1 channels: the stub never negotiates HTTP/2, so the
    # generic HTTP/1.1-or-2 wrapper that Site builds by default is not needed.
    protocol = StubChannel  # type: ignore[assignment]
    noisy = False

    def __init__(self, resource: Resource, reactor: Clock) -> None:
        super().__init__(resource, requestFactory=StubRequest, reactor=reactor)
        self.connections: set[StubChannel] = set()

    def log(self, request: HTTPRequest) -> None:
        """Write no access log line: :class:`StubResource` logs each request,
        also those that never finish (cut, hang)."""


class StubResource(Resource):
    """Answers every method on every path as the server *spec* would."""

    isLeaf = True
    _log = Logger()

    def __init__(
        self,
        spec: ServerSpec,
        folders: Sequence[FolderSpec],
        records: RequestLog,
        clock: Clock,
        server: StubServer,
    ) -> None:
        super().__init__()
        self._spec = spec
        self._folders = tuple(folders)
        self._records = records
        self._clock = clock
        self._server = server

    def render(self, request: StubRequest) -> object:  # type: ignore[override]
        """Record the request, then answer it under the current fault."""
        fault = self._server.fault
        body_length, body_sha256 = body_digest(request.content)
        record = make_record(
            server=self._spec.name,
            method=request.method,
            uri=request.uri,
            headers=request.raw_headers,
            body_length=body_length,
            body_sha256=body_sha256,
            time=self._clock.seconds(),
            peer=_peer(request),
        )
        self._records.add(record)
        request.notifyFinish().addBoth(self._log_done, request)
        response = self._prepare(request, record)
        ResponseSender(request, response, fault, self._clock).start()
        return NOT_DONE_YET

    def _prepare(self, request: StubRequest, record: dict[str, Any]) -> PreparedResponse:
        server_header = (b"X-Backend-Server", self._spec.name.encode("latin-1"))
        path = request_path(request.uri.decode("latin-1"))
        reply = route(
            self._spec,
            self._folders,
            path,
            from_front_end=request.requestHeaders.hasHeader(b"X-Front-End-Server"),
            method=request.method.decode("latin-1"),
        )
        if isinstance(reply, StreamReply):
            return PreparedResponse(
                200,
                headers=(server_header, (b"Content-Type", b"application/octet-stream")),
                stream_length=reply.length,
            )
        if isinstance(reply, EchoReply):
            echo = {
                key: record[key]
                for key in (
                    "server",
                    "method",
                    "uri",
                    "headers",
                    "body_length",
                    "body_sha256",
                )
            }
            return PreparedResponse(
                200,
                headers=(server_header, (b"Content-Type", _JSON)),
                body=json.dumps(echo).encode("utf-8"),
            )
        if isinstance(reply, SinkReply):
            text = (
                f"{reply.target} on {self._spec.name}: received"
                f" {record['body_length']} bytes, sha256 {record['body_sha256']}\n"
            )
            reply = TextReply(reply.status, text, reason=reply.reason)
        headers = [server_header, (b"Content-Type", _TEXT)]
        headers += [(k.encode("latin-1"), v.encode("latin-1")) for k, v in reply.headers]
        return PreparedResponse(
            reply.status,
            reason=reply.reason.encode("latin-1") or None,
            headers=tuple(headers),
            body=reply.body.encode("utf-8"),
        )

    def _log_done(self, result: object, request: StubRequest) -> None:
        """Log one line when the response ends or the connection is lost.

        The status is ``-`` when no status line was sent (lost during a delay).
        """
        outcome = "" if not isinstance(result, Failure) else " (connection lost)"
        self._log.info(
            "{server} {method} {uri} {status}{outcome}",
            server=self._spec.name,
            method=request.method.decode("latin-1"),
            uri=request.uri.decode("latin-1"),
            status=request.code if request.startedWriting else "-",
            outcome=outcome,
        )


class StubServer:
    """One server of the farm: its Site, its listener and its fault."""

    def __init__(
        self,
        spec: ServerSpec,
        folders: Sequence[FolderSpec],
        port: int,
        records: RequestLog,
        reactor: Any,
    ) -> None:
        self.spec = spec
        self.port = port
        self.fault: Fault = NO_FAULT
        self._reactor = reactor  # IReactorTCP and IReactorTime
        self._site = StubSite(StubResource(spec, folders, records, reactor, self), reactor)
        self._listening: Any = None  # the IListeningPort while listening
        self._lock = DeferredLock()

    @property
    def name(self) -> str:
        """The server's name (its host name in the directory)."""
        return self.spec.name

    @property
    def listening(self) -> bool:
        """Whether the server accepts connections now."""
        return self._listening is not None

    def to_json(self) -> dict[str, Any]:
        """The control API's description of this server."""
        return {
            "name": self.spec.name,
            "address": self.spec.address,
            "port": self.port,
            "fault": self.fault.to_json(),
        }

    def start(self) -> Deferred[None]:
        """Listen on the server's address; fails with CannotListenError."""
        return self._lock.run(lambda: ensureDeferred(self._listen()))

    def stop(self) -> Deferred[None]:
        """Stop listening and drop every connection."""
        return self._lock.run(lambda: ensureDeferred(self._unlisten()))

    def set_fault(self, fault: Fault) -> Deferred[Fault]:
        """Put *fault* in force; fires once it is (listener closed or open)."""
        return self._lock.run(lambda: ensureDeferred(self._set_fault(fault)))

    async def _set_fault(self, fault: Fault) -> Fault:
        if fault.mode == "refuse":
            self.fault = fault
            await self._unlisten()
        else:
            await self._listen()
            self.fault = fault
        return fault

    async def _listen(self) -> None:
        if self._listening is None:
            endpoint = TCP4ServerEndpoint(self._reactor, self.port, interface=self.spec.address)
            self._listening = await endpoint.listen(self._site)

    async def _unlisten(self) -> None:
        if self._listening is not None:
            listening, self._listening = self._listening, None
            await maybeDeferred(listening.stopListening)
        for channel in list(self._site.connections):
            transport: Any = channel.transport
            if transport is not None:
                transport.abortConnection()


def _peer(request: Request) -> str:
    """``host:port`` of the client connection (tells keep-alive reuse apart)."""
    addr = request.getClientAddress()
    return f"{getattr(addr, 'host', '-')}:{getattr(addr, 'port', 0)}"
