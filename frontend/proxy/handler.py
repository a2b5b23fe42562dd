"""The front end's request handler: route, forward, relay, answer errors.

Every request the client connections (:mod:`frontend.wire.server`) read goes
through :meth:`FrontEnd.handle`.  It takes the current :class:`Runtime` (a
configuration and everything built from it), so a configuration swapped in
while a request is in flight does not affect it.  Every failure is answered
by :meth:`FrontEnd._answer_error`, through :func:`frontend.errors.status_for`.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from http import HTTPStatus
from typing import Any

from twisted.internet import defer
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger, globalLogPublisher
from twisted.python.failure import Failure

from frontend.errors import AuthenticationRequired, BadRequest, status_for
from frontend.proxy.accesslog import access_event
from frontend.proxy.forward import Forwarder
from frontend.proxy.interfaces import NO_OBSERVER, ProxyObserver
from frontend.proxy.runtime import Runtime
from frontend.routing.decisions import parse_target
from frontend.routing.marks import UnavailableMarks
from frontend.routing.resolver import ClientRequest
from frontend.wire.incoming import IncomingRequest, error_length
from frontend.wire.interfaces import Exchange
from frontend.wire.relay import ResponseRelay

__all__ = ["NO_ACCESS_LOG", "FrontEnd"]


def NO_ACCESS_LOG(event: dict[str, Any]) -> None:  # noqa: N802 - a constant
    """The access log switched off: no event is even built."""


log = Logger()


Driven = Coroutine["defer.Deferred[object]", object, None]


def _drive(coro: Driven, result: object = None) -> None:
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
            waiting: defer.Deferred[object] = result.throwExceptionIntoGenerator(coro)
        else:
            waiting = coro.send(result)
    except StopIteration:
        return
    except Exception:
        log.failure("request handling failed")
        return
    waiting.addBoth(_resume, coro)


def _resume(result: object, coro: Driven) -> None:
    # The result goes into the coroutine, which handles a failure; the
    # Deferred ends with None, so no failure is left in it unhandled.
    _drive(coro, result)


class FrontEnd:
    """Handles every request: the routing table is the configuration's."""

    def __init__(
        self,
        runtime: Callable[[], Runtime],
        reactor: IReactorTime,
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
        self._forwarder = Forwarder(reactor, marks, metrics, self.seen)
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
        at_end: list[Callable[[], None]] = []

        def client_gone() -> None:
            gone.append(True)
            for d in pending:
                d.cancel()
            for r in relay:
                r.client_gone()

        def ended() -> None:
            for close in at_end:
                close()
            self._log_access(request, info, started)

        request.on_gone = client_gone
        request.on_end = ended
        try:
            creq = self._client_request(request)
            route = await rt.router.route(creq, info.__setitem__)
            response, info["backend"] = await self._forwarder.send(
                rt, request, creq, route, pending, at_end.append
            )
            if gone:
                response.abort()
                return
            info["upstream"] = response.peer
            self._start_response(request, response, relay, info)
        except Exception as e:  # every failure is answered, see _answer_error
            if not gone:
                self._answer_error(request, e, rt, info)
            else:
                log.info("client went away: {e!r}", e=e)

    @staticmethod
    def _client_request(request: IncomingRequest) -> ClientRequest:
        auth = request.authorization
        if len(auth) > 1:
            raise BadRequest("The request has more than one Authorization header.")
        return ClientRequest(
            method=request.method,
            target=parse_target(request.target),
            authorization=auth[0] if auth else None,
            client_address=request.peer,
            secure=request.secure,
        )

    @staticmethod
    def _start_response(
        request: IncomingRequest,
        response: Exchange,
        relay: list[ResponseRelay],
        info: dict[str, Any],
    ) -> None:
        length = response.length
        if request.method == b"HEAD":  # the length the body would have had
            declared = response.header(b"content-length")
            length = int(declared[0]) if len(declared) == 1 and declared[0].isdigit() else None
        whole = response.whole_body() if request.method != b"HEAD" else None
        if whole is not None:  # the common small answer: no relay needed
            info["bytes"] = len(whole)  # before answering: the access log is written then
            request.answer(response.code, response.phrase, response.end_to_end, whole)
            return
        request.respond(response.code, response.phrase, response.end_to_end, length)

        def done(sent: int, error: str | None) -> None:
            info["bytes"] = sent
            info["complete"] = error is None

        r = ResponseRelay(request, response, done)
        relay.append(r)
        r.start()

    def _answer_error(
        self, request: IncomingRequest, exc: BaseException, rt: Runtime, info: dict[str, Any]
    ) -> None:
        answer = status_for(exc)
        emit = log.warn if answer.status >= HTTPStatus.INTERNAL_SERVER_ERROR else log.info
        emit(
            "{method} {uri} answered {status}: {detail}",
            method=request.method.decode("ascii", "replace"),
            uri=request.target.decode("ascii", "backslashreplace"),
            status=answer.status,
            detail=answer.log_detail,
        )
        if request.done:
            return  # the connection answered it already (a broken body, a deadline)
        if request.started:
            request.abort()
            return
        extra = []
        if isinstance(exc, AuthenticationRequired):
            realm = rt.config.frontend.realm.replace("\\", "\\\\").replace('"', '\\"')
            extra.append((b"WWW-Authenticate", f'Basic realm="{realm}"'.encode()))
        info["bytes"] = error_length(answer)  # before answering: the access log is written then
        request.answer_error(answer, extra)

    def _log_access(self, request: IncomingRequest, info: dict[str, Any], started: float) -> None:
        self._request_over()
        now = self._reactor.seconds()
        backend = info["backend"]
        if backend is not None:
            self.seen[backend] = (request.code, now)
        self._metrics.request_finished(info["vdir"], request.code, backend, now - started)
        if self._access is NO_ACCESS_LOG:
            return
        # References only: the access stream decodes and formats when it writes.
        self._access(
            access_event(
                client=request.peer,
                user=info["user"],
                method=request.method,
                target=request.target,
                version=request.version,
                headers=request.headers,
                backend=backend,
                upstream=info.get("upstream"),
                vdir=info["vdir"],
                status=request.code,
                bytes=info["bytes"],
                complete=info.get("complete", True),
                duration=now - started,
            )
        )
