"""The front end's one resource: route, forward, relay, answer errors.

Every request goes through :meth:`FrontEndResource.render`.  It takes the
current :class:`Runtime` (a configuration and everything built from it), so
a configuration swapped in while a request is in flight does not affect it.
Every failure is answered by :meth:`FrontEndResource._answer_error`, through
:func:`frontend.errors.status_for`.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from twisted.internet import defer
from twisted.internet import error as ierror
from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from twisted.web.http_headers import Headers
from twisted.web.iweb import UNKNOWN_LENGTH, IResponse
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request

from frontend.accesslog import access_log
from frontend.auth import Authenticator
from frontend.config import Config
from frontend.errors import (
    AuthenticationRequired,
    BadRequest,
    NoServerAvailable,
    ReferralLoop,
    status_for,
)
from frontend.forward import BackendAgent, RequestBody, ResponseRelay, make_pool
from frontend.headers import backend_request_headers, client_response_headers
from frontend.lookups import Lookups
from frontend.marks import UnavailableMarks
from frontend.metrics import Metrics
from frontend.router import ClientRequest, Router
from frontend.routing import Route, parse_replica_servers, parse_target

__all__ = ["Runtime", "FrontEndResource", "CONNECT_FAILURES"]

log = Logger()

# Failures that prove nothing of the request reached the server.
CONNECT_FAILURES = (
    ierror.ConnectionRefusedError,
    ierror.TimeoutError,
    ierror.NoRouteError,
    ierror.DNSLookupError,
)
# ConnectingCancelledError is not one: it is what a connect cancelled because
# the client went away raises, and must not mark the server.


@dataclass
class Runtime:
    """One configuration and what is built from it.

    ``directory`` is shared between runtimes while its settings stay the same
    (see :class:`frontend.service.FrontEndService`); caches belong to one
    runtime, so a reload starts with empty caches.
    """

    config: Config
    router: Router
    agent: Any
    lookups: Lookups | None = None
    auth: Authenticator | None = None

    @classmethod
    def build(
        cls,
        config: Config,
        reactor: Any,
        marks: UnavailableMarks,
        *,
        directory: Any = None,
        agent: Any = None,
    ) -> Runtime:
        """Build from ``config``; ``agent`` replaces the back-end agent in tests."""
        fe = config.frontend
        if agent is None:
            pool = make_pool(reactor, fe.max_idle_per_backend, fe.idle_timeout)
            agent = BackendAgent(
                reactor,
                pool,
                port=fe.backend_port,
                connect_timeout=fe.connect_timeout,
                response_timeout=fe.response_timeout,
                hosts=config.hosts,
            )
        lookups = auth = None
        if directory is not None:
            lookups = Lookups(directory, reactor, ttl=fe.cache_ttl, maxsize=fe.cache_size)
            if fe.authenticate:
                auth = Authenticator(
                    directory, lookups, reactor, ttl=fe.cache_ttl, maxsize=fe.cache_size
                )
        router = Router(config, marks, lookups=lookups, auth=auth)
        return cls(config=config, router=router, agent=agent, lookups=lookups, auth=auth)


class FrontEndResource(Resource):
    """Serves every path: the routing table is the configuration's."""

    isLeaf = True

    def __init__(
        self,
        runtime: Callable[[], Runtime],
        reactor: Any,
        marks: UnavailableMarks,
        metrics: Metrics | None = None,
    ) -> None:
        super().__init__()
        self._runtime = runtime
        self._reactor = reactor
        self._marks = marks
        self._metrics = metrics or Metrics(marks=marks.snapshot)
        # Every back end answered or tried: name -> (last status or None, when).
        self.seen: dict[str, tuple[int | None, float]] = {}
        self.in_flight = 0
        self._idle: list[defer.Deferred[None]] = []

    def render(self, request: Request) -> Any:
        self.in_flight += 1
        request.notifyFinish().addBoth(self._request_over)
        defer.ensureDeferred(self._serve(request, self._runtime()))
        return NOT_DONE_YET

    def _request_over(self, _: object) -> None:
        self.in_flight -= 1
        if self.in_flight == 0:
            idle, self._idle = self._idle, []
            for d in idle:
                d.callback(None)

    def drained(self, timeout: float) -> defer.Deferred[None]:
        """Fires when no request is in flight, or after ``timeout`` seconds."""
        if self.in_flight == 0:
            return defer.succeed(None)
        d: defer.Deferred[None] = defer.Deferred()
        self._idle.append(d)
        log.info("waiting for {n} requests in flight", n=self.in_flight)

        def give_up() -> None:
            if d in self._idle:
                self._idle.remove(d)
                log.warn("stopping with {n} requests still in flight", n=self.in_flight)
                d.callback(None)

        call = self._reactor.callLater(timeout, give_up)

        def cancel_timer(result: None) -> None:
            if call.active():
                call.cancel()
            return result

        return d.addCallback(cancel_timer)

    async def _serve(self, request: Request, rt: Runtime) -> None:
        started = self._reactor.seconds()
        info: dict[str, Any] = {"backend": None, "user": None, "bytes": 0, "vdir": "-"}
        relay: list[ResponseRelay] = []
        pending: list[defer.Deferred[Any]] = []
        gone: list[bool] = []

        def client_gone(_: Any) -> None:
            gone.append(True)
            for d in pending:
                d.cancel()
            for r in relay:
                r.client_gone()

        finished = request.notifyFinish()
        finished.addErrback(client_gone)
        finished.addBoth(lambda _: self._log_access(request, info, started))

        request.responseHeaders.removeHeader(b"server")
        try:
            creq = self._client_request(request)
            route = await rt.router.route(creq, info.__setitem__)
            response, info["backend"] = await self._send(rt, request, creq, route, pending)
        except Exception as e:  # every failure is answered, see _answer_error
            if not gone:
                self._answer_error(request, e, rt, info)
            else:
                log.info("client went away: {e!r}", e=e)
            return
        if gone:
            response.deliverBody(_Discard())
            return
        self._start_response(rt, request, response, relay, info)

    def _client_request(self, request: Request) -> ClientRequest:
        if request.clientproto == b"HTTP/1.1" and not request.requestHeaders.hasHeader(b"host"):
            raise BadRequest("An HTTP/1.1 request needs a Host header.")
        auth = request.requestHeaders.getRawHeaders(b"authorization")
        if auth is not None and len(auth) > 1:
            raise BadRequest("The request has more than one Authorization header.")
        return ClientRequest(
            method=request.method,
            target=parse_target(request.uri),
            authorization=auth[0] if auth else None,
            client_address=_client_host(request),
            secure=request.isSecure(),
        )

    async def _send(
        self,
        rt: Runtime,
        request: Request,
        creq: ClientRequest,
        route: Route,
        pending: list[defer.Deferred[Any]],
    ) -> tuple[IResponse, str]:
        """Send to the route's servers in turn; only retry what never arrived."""
        body = RequestBody(request.content or io.BytesIO(), self._reactor)
        headers = backend_request_headers(
            request.requestHeaders,
            client_address=creq.client_address,
            secure=creq.secure,
            frontend_name=rt.config.frontend.name,
        )
        candidates = self._available(route)
        tried: set[str] = set()
        referrals = 0
        rerouted = False
        while True:
            server = candidates.pop(0)
            tried.add(server.lower())
            d = rt.agent.send(server, creq.method, route.target, headers, body.producer())
            pending.append(d)
            try:
                response = await d
            except CONNECT_FAILURES as e:
                log.warn("back end {server} unreachable: {e}", server=server, e=e)
                self.seen[server] = (None, self._reactor.seconds())
                if route.mark:
                    self._marks.mark(server)
                    self._metrics.server_marked(server)
                    candidates = [s for s in candidates if s not in self._marks]
                if route.failover and candidates:
                    continue
                if route.mark:
                    raise NoServerAvailable(detail=f"last tried {server}: {e}") from e
                if not rerouted:
                    rerouted = True
                    moved = await rt.router.reroute_refused(route)
                    if moved is not None:
                        log.info("mailbox moved to {servers}", servers=moved.servers)
                        route, candidates = moved, list(moved.servers)
                        continue
                raise
            finally:
                pending.remove(d)
            listed = self._referral(route, response)
            if not listed:
                return response, server
            referrals += 1
            self._metrics.referral_followed(route.vdir.path)
            if referrals > 2:
                raise ReferralLoop(detail=f"third referral in a row, from {server}")
            log.info(
                "{server} referred {uri} to {listed}",
                server=server,
                uri=creq.target.raw.decode("ascii"),
                listed=", ".join(listed),
            )
            route = replace(route, servers=rt.router.referred(route, creq.target, listed, tried))
            candidates = self._available(route)

    def _available(self, route: Route) -> list[str]:
        """The route's servers, without marked ones when marks apply."""
        if not route.mark:
            return list(route.servers)
        candidates = [s for s in route.servers if s not in self._marks]
        if not candidates:
            raise NoServerAvailable(detail=f"all of {route.servers} marked unavailable")
        return candidates

    @staticmethod
    def _referral(route: Route, response: IResponse) -> tuple[str, ...]:
        """The servers a 421 referral names (its body is drained); () otherwise."""
        if response.code != 421 or not route.referrals:
            return ()
        listed = parse_replica_servers(response.headers.getRawHeaders(b"x-replica-servers"))
        if listed:
            response.deliverBody(_Drain())
        return listed

    def _start_response(
        self,
        rt: Runtime,
        request: Request,
        response: IResponse,
        relay: list[ResponseRelay],
        info: dict[str, Any],
    ) -> None:
        request.setResponseCode(response.code, response.phrase)
        request.responseHeaders = Headers()
        request.defaultContentType = None
        for name, values in client_response_headers(response.headers):
            request.responseHeaders.setRawHeaders(name, values)
        # Twisted's client keeps Content-Length out of response.headers and
        # gives it as response.length (0 for HEAD: the real one is not kept,
        # so a HEAD answer goes without it).
        if response.length is not UNKNOWN_LENGTH and request.method != b"HEAD":
            request.responseHeaders.setRawHeaders(b"content-length", [b"%d" % response.length])

        def done(sent: int, complete: bool) -> None:
            info["bytes"] = sent
            info["complete"] = complete

        request.write(b"")  # the status and headers go out now, before any body
        idle = rt.config.frontend.response_timeout
        r = ResponseRelay(request, done, self._reactor, idle)
        relay.append(r)
        r.start(response)

    def _answer_error(
        self, request: Request, exc: BaseException, rt: Runtime, info: dict[str, Any]
    ) -> None:
        answer = status_for(exc)
        emit = log.warn if answer.status >= 500 else log.info
        emit(
            "{method} {uri} answered {status}: {detail}",
            method=request.method.decode("ascii", "replace"),
            uri=request.uri.decode("ascii", "backslashreplace"),
            status=answer.status,
            detail=answer.log_detail,
        )
        if request.startedWriting:
            transport: Any = request.transport
            transport.abortConnection()
            return
        body = f"{answer.status} {answer.reason}\n".encode()
        request.setResponseCode(answer.status)
        request.responseHeaders = Headers()
        request.setHeader(b"content-type", b"text/plain; charset=utf-8")
        request.setHeader(b"content-length", b"%d" % len(body))
        request.setHeader(b"cache-control", b"no-store")
        if isinstance(exc, AuthenticationRequired):
            realm = rt.config.frontend.realm.replace("\\", "\\\\").replace('"', '\\"')
            request.setHeader(b"www-authenticate", f'Basic realm="{realm}"'.encode())
        info["bytes"] = len(body)
        request.write(body)
        request.finish()

    def _log_access(self, request: Request, info: dict[str, Any], started: float) -> None:
        now = self._reactor.seconds()
        backend = info["backend"]
        if backend is not None:
            self.seen[backend] = (request.code, now)
        self._metrics.request_finished(info["vdir"], request.code, backend, now - started)
        access_log.info(
            "access",
            client=_client_host(request),
            user=info["user"],
            method=request.method.decode("ascii", "replace"),
            path=request.uri.decode("ascii", "backslashreplace").replace('"', "%22"),
            backend=backend,
            vdir=info["vdir"],
            status=request.code,
            bytes=info["bytes"],
            complete=info.get("complete", True),
            duration=now - started,
        )


def _client_host(request: Request) -> str:
    addr = request.getClientAddress()
    return str(getattr(addr, "host", "-"))


class _Discard(Protocol):
    """Drops a response body nobody wants any more, closing its connection."""

    transport: Any = None  # the response's TransportProxyProducer

    def connectionMade(self) -> None:
        self.transport.stopProducing()


class _Drain(Protocol):
    """Reads a referral's body to its end so the connection can be reused."""
