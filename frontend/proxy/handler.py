"""The front end's request handler: route, forward, relay, answer errors.

Every request the client connections (:mod:`frontend.wire.server`) read goes
through :meth:`FrontEnd.handle`.  It takes the current :class:`Runtime` (a
configuration and everything built from it), so a configuration swapped in
while a request is in flight does not affect it.  Every failure is answered
by :meth:`FrontEnd._answer_error`, through :func:`frontend.errors.status_for`.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from dataclasses import replace
from http import HTTPStatus
from typing import Any

from twisted.internet import defer
from twisted.internet import error as ierror
from twisted.logger import Logger, globalLogPublisher
from twisted.python.failure import Failure

from frontend.errors import (
    AuthenticationRequired,
    BadRequest,
    NoServerAvailable,
    ReferralLoop,
    status_for,
)
from frontend.proxy.accesslog import access_event
from frontend.proxy.interfaces import NO_OBSERVER, ProxyObserver
from frontend.proxy.runtime import Runtime
from frontend.routing.decisions import Route, parse_replica_servers, parse_target
from frontend.routing.marks import UnavailableMarks
from frontend.routing.resolver import ClientRequest
from frontend.wire.headers import backend_request_headers, client_response_headers
from frontend.wire.incoming import IncomingRequest
from frontend.wire.relay import Drain, ResponseRelay

__all__ = ["FrontEnd", "CONNECT_FAILURES"]

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

_PHRASES = {s.value: s.phrase.encode("ascii") for s in HTTPStatus}


def _drive(coro: Coroutine[Any, Any, None], result: Any = None) -> None:
    """Run ``coro``, which awaits only Deferreds, until it waits on one; resume
    it when that one fires.

    This is what ``defer.ensureDeferred`` does, without what a request does
    not need and that costs as much as parsing one: a Deferred for the
    coroutine's own result, a copy of the context, cancellation.  ``coro``
    handles its own errors (``_serve`` answers every failure); one that
    escapes is logged.
    """
    try:
        if isinstance(result, Failure):
            waiting: defer.Deferred[Any] = result.throwExceptionIntoGenerator(coro)  # type: ignore[arg-type]
        else:
            waiting = coro.send(result)
    except StopIteration:
        return
    except Exception:
        log.failure("request handling failed")
        return
    waiting.addBoth(_resume, coro)


def _resume(result: Any, coro: Coroutine[Any, Any, None]) -> None:
    # The result goes into the coroutine, which handles a failure; the
    # Deferred ends with None, so no failure is left in it unhandled.
    _drive(coro, result)


class FrontEnd:
    """Handles every request: the routing table is the configuration's."""

    def __init__(
        self,
        runtime: Callable[[], Runtime],
        reactor: Any,
        marks: UnavailableMarks,
        metrics: ProxyObserver = NO_OBSERVER,
        access: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        """``access`` receives an access event per request (by default the
        global log publisher; ``feproxy serve`` gives the access stream's
        own observer)."""
        self._access = access if access is not None else globalLogPublisher
        self._runtime = runtime
        self._reactor = reactor
        self._marks = marks
        self._metrics = metrics
        # Every back end answered or tried: name -> (last status or None, when).
        self.seen: dict[str, tuple[int | None, float]] = {}
        self.in_flight = 0
        self._idle: list[defer.Deferred[None]] = []

    def handle(self, request: IncomingRequest) -> None:
        self.in_flight += 1
        _drive(self._serve(request, self._runtime()))

    def _request_over(self) -> None:
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

    async def _serve(self, request: IncomingRequest, rt: Runtime) -> None:
        started = self._reactor.seconds()
        info: dict[str, Any] = {"backend": None, "user": None, "bytes": 0, "vdir": "-"}
        relay: list[ResponseRelay] = []
        pending: list[defer.Deferred[Any]] = []
        gone: list[bool] = []

        def client_gone() -> None:
            gone.append(True)
            for d in pending:
                d.cancel()
            for r in relay:
                r.client_gone()

        request.on_gone = client_gone
        request.on_end = lambda: self._log_access(request, info, started)
        try:
            creq = self._client_request(request)
            route = await rt.router.route(creq, info.__setitem__)
            response, info["backend"] = await self._send(rt, request, creq, route, pending)
            if gone:
                response.abort()
                return
            self._start_response(rt, request, response, relay, info)
        except Exception as e:  # every failure is answered, see _answer_error
            if not gone:
                self._answer_error(request, e, rt, info)
            else:
                log.info("client went away: {e!r}", e=e)

    @staticmethod
    def _client_request(request: IncomingRequest) -> ClientRequest:
        auth = request.header(b"authorization")
        if len(auth) > 1:
            raise BadRequest("The request has more than one Authorization header.")
        return ClientRequest(
            method=request.method,
            target=parse_target(request.target),
            authorization=auth[0] if auth else None,
            client_address=request.peer,
            secure=request.secure,
        )

    async def _send(
        self,
        rt: Runtime,
        request: IncomingRequest,
        creq: ClientRequest,
        route: Route,
        pending: list[defer.Deferred[Any]],
    ) -> tuple[Any, str]:
        """Send to the route's servers in turn; only retry what never arrived."""
        headers = backend_request_headers(
            request.headers,
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
            d = rt.agent.send(server, creq.method, route.target, headers, request.body)
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
    def _referral(route: Route, response: Any) -> tuple[str, ...]:
        """The servers a 421 referral names (its body is drained); () otherwise."""
        if response.code != 421 or not route.referrals:
            return ()
        listed = parse_replica_servers(response.header(b"x-replica-servers"))
        if listed:
            response.deliver_body(Drain())
        return listed

    def _start_response(
        self,
        rt: Runtime,
        request: IncomingRequest,
        response: Any,
        relay: list[ResponseRelay],
        info: dict[str, Any],
    ) -> None:
        length = response.length
        if request.method == b"HEAD":  # the length the body would have had
            declared = response.header(b"content-length")
            length = int(declared[0]) if len(declared) == 1 and declared[0].isdigit() else None
        request.respond(
            response.code, response.phrase, client_response_headers(response.headers), length
        )

        def done(sent: int, complete: bool) -> None:
            info["bytes"] = sent
            info["complete"] = complete

        r = ResponseRelay(
            request, response, done, self._reactor, rt.config.frontend.response_timeout
        )
        relay.append(r)
        r.start()

    def _answer_error(
        self, request: IncomingRequest, exc: BaseException, rt: Runtime, info: dict[str, Any]
    ) -> None:
        answer = status_for(exc)
        emit = log.warn if answer.status >= 500 else log.info
        emit(
            "{method} {uri} answered {status}: {detail}",
            method=request.method.decode("ascii", "replace"),
            uri=request.target.decode("ascii", "backslashreplace"),
            status=answer.status,
            detail=answer.log_detail,
        )
        if request.started:
            request.abort()
            return
        body = f"{answer.status} {answer.reason}\n".encode()
        headers = [
            (b"Content-Type", b"text/plain; charset=utf-8"),
            (b"Cache-Control", b"no-store"),
        ]
        if isinstance(exc, AuthenticationRequired):
            realm = rt.config.frontend.realm.replace("\\", "\\\\").replace('"', '\\"')
            headers.append((b"WWW-Authenticate", f'Basic realm="{realm}"'.encode()))
        info["bytes"] = len(body)
        request.respond(answer.status, _PHRASES.get(answer.status, b"Error"), headers, len(body))
        request.write(body)
        request.finish()

    def _log_access(self, request: IncomingRequest, info: dict[str, Any], started: float) -> None:
        self._request_over()
        now = self._reactor.seconds()
        backend = info["backend"]
        if backend is not None:
            self.seen[backend] = (request.code, now)
        self._metrics.request_finished(info["vdir"], request.code, backend, now - started)
        self._access(
            access_event(
                client=request.peer,
                user=info["user"],
                method=request.method.decode("ascii", "replace"),
                path=request.target.decode("ascii", "backslashreplace").replace('"', "%22"),
                backend=backend,
                vdir=info["vdir"],
                status=request.code,
                bytes=info["bytes"],
                complete=info.get("complete", True),
                duration=now - started,
            )
        )
