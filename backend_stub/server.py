"""One stub back-end server: a twisted.web Site on its own address.

The server records every request once its body arrived (before any fault
delays the answer), or when it answers before the body, or when the
connection is lost mid-body; it decides the reply with
:func:`backend_stub.routing.route` and sends it through
:class:`backend_stub.response.ResponseSender` under the fault in force.
How it answers ``Expect: 100-continue`` is its expect mode (topology key
``expect``, control API ``/servers/<name>/expect``; see
:mod:`backend_stub.expect` and :mod:`backend_stub.channel`).

The ``refuse`` fault closes the listener and drops every open connection
(a server that went down keeps no connections alive); leaving it listens
again on the same address and port.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, Protocol

from twisted.internet.defer import Deferred, DeferredLock, ensureDeferred, maybeDeferred
from twisted.internet.endpoints import TCP4ServerEndpoint
from twisted.internet.interfaces import IListeningPort
from twisted.internet.protocol import ServerFactory
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request

from backend_stub.channel import StubChannel, StubRequest, StubSite
from backend_stub.expect import answers_before_body
from backend_stub.faults import NO_FAULT, Fault
from backend_stub.records import Record, RequestHead, RequestLog, make_record
from backend_stub.response import Clock, PreparedResponse, ResponseSender
from backend_stub.routing import (
    EchoReply,
    Reply,
    SinkReply,
    StreamReply,
    TextReply,
    request_path,
    route,
)
from backend_stub.topology import ExpectMode, FolderSpec, ServerSpec

__all__ = ["StubChannel", "StubReactor", "StubRequest", "StubResource", "StubServer", "StubSite"]

_TEXT = b"text/plain; charset=utf-8"
_JSON = b"application/json"


class StubReactor(Clock, Protocol):
    """What a stub server asks of its reactor: ``IReactorTime`` (the part in
    :class:`~backend_stub.response.Clock`) and ``IReactorTCP.listenTCP`` (a
    reactor, or a ``MemoryReactorClock`` in tests)."""

    def listenTCP(
        self, port: int, factory: ServerFactory, backlog: int = 50, interface: str = ""
    ) -> IListeningPort: ...


class StubResource(Resource):
    """Answers every method on every path as *server* would."""

    isLeaf = True
    _log = Logger()

    def __init__(self, server: StubServer, clock: Clock) -> None:
        Resource.__init__(self)
        self._server = server
        self._clock = clock

    def render(self, request: StubRequest) -> object:
        """Record the request, then answer it under the current fault."""
        fault = self._server.fault
        record = self._server.record(request)
        request.notifyFinish().addBoth(self._log_done, request)
        response = self._prepare(request, record)
        ResponseSender(request, response, fault, self._clock).start()
        return NOT_DONE_YET

    def _prepare(self, request: StubRequest, record: Record) -> PreparedResponse:
        server_header = (b"X-Backend-Server", self._server.name.encode("latin-1"))
        reply = self._server.reply_for(request)
        if isinstance(reply, StreamReply):
            return PreparedResponse(
                200,
                headers=(server_header, (b"Content-Type", b"application/octet-stream")),
                stream_length=reply.length,
            )
        if isinstance(reply, EchoReply):
            echo = {key: record[key] for key in _ECHOED}
            return PreparedResponse(
                200,
                headers=(server_header, (b"Content-Type", _JSON)),
                body=json.dumps(echo).encode("utf-8"),
            )
        if isinstance(reply, SinkReply):
            text = (
                f"{reply.target} on {self._server.name}: received"
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
            server=self._server.name,
            method=request.method.decode("latin-1"),
            uri=request.uri.decode("latin-1"),
            status=request.code if request.startedWriting else "-",
            outcome=outcome,
        )


# The keys of a request's record that the JSON echo of /exchweb/ returns.
_ECHOED = ("server", "method", "uri", "headers", "body_length", "body_sha256")


class StubServer:
    """One server of the farm: its Site, its listener, its fault and its
    expect mode (the :class:`~backend_stub.channel.Backend` of its channels)."""

    _log = Logger()

    def __init__(
        self,
        spec: ServerSpec,
        folders: Sequence[FolderSpec],
        port: int,
        records: RequestLog,
        reactor: StubReactor,
    ) -> None:
        self.spec = spec
        self.port = port
        self.fault: Fault = NO_FAULT
        self.expect_mode: ExpectMode = spec.expect
        self._folders = tuple(folders)
        self._records = records
        self._reactor = reactor
        self._site = StubSite(StubResource(self, reactor), reactor, self)
        self._listening: IListeningPort | None = None
        self._lock = DeferredLock()

    @property
    def name(self) -> str:
        """The server's name (its host name in the directory)."""
        return self.spec.name

    @property
    def site(self) -> StubSite:
        """The server's twisted.web Site."""
        return self._site

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
            "expect": self.expect_mode,
        }

    def reply_for(self, request: StubRequest) -> Reply:
        """What this server answers to *request*, judged from its head."""
        head = request.head
        method, uri = (head.method, head.uri) if head is not None else (request.method, request.uri)
        return route(
            self.spec,
            self._folders,
            request_path(uri.decode("latin-1")),
            from_front_end=request.requestHeaders.hasHeader(b"X-Front-End-Server"),
            method=method.decode("latin-1"),
        )

    def answers_before_body(self, request: StubRequest) -> bool:
        """Whether a deciding server answers *request* without its body."""
        return answers_before_body(self.reply_for(request), self.fault)

    def record(self, request: StubRequest) -> Record:
        """Record *request* with what arrived of its body so far."""
        head = request.head or RequestHead(request.method, request.uri, request.clientproto)
        body = request.body
        record = make_record(
            server=self.spec.name,
            head=head,
            headers=request.raw_headers,
            body=body,
            expect=request.expect,
            continued=request.continued,
            time=self._reactor.seconds(),
            peer=_peer(request),
        )
        self._records.add(record)
        request.record = record
        if not body.complete and not request.early:  # lost mid-body: no answer to log
            self._log.info(
                "{server} {method} {uri} - (connection lost after {length} body bytes)",
                server=self.spec.name,
                method=head.method.decode("latin-1"),
                uri=head.uri.decode("latin-1"),
                length=body.length,
            )
        return record

    def set_expect(self, mode: ExpectMode) -> ExpectMode:
        """Answer ``Expect: 100-continue`` in *mode* from now on."""
        self.expect_mode = mode
        return mode

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
