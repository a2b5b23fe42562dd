"""Sending one request to its route's servers in turn.

A request goes to a second server only when nothing of it reached the first
(the connection failed) or after a referral (a 421 that says the back end
did not process it).  Its body is read from the client only once a back end
takes it:

- on a route that does not refer (a mailbox, a static vdir), the body
  streams from the client to the back end as it arrives, never stored;
- on a public-folder route, the head goes with ``Expect: 100-continue``: a
  back end that refers answers before the body is sent, and the next server
  gets it untouched.  A back end that asks for the body and refers anyway
  gets it from a copy kept while it streamed (:mod:`frontend.wire.spool`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet import defer
from twisted.internet import error as ierror
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from frontend.errors import NoServerAvailable, ReferralLoop
from frontend.proxy.interfaces import ProxyObserver
from frontend.proxy.runtime import Runtime
from frontend.routing.decisions import Route, parse_replica_servers
from frontend.routing.marks import UnavailableMarks
from frontend.routing.resolver import ClientRequest
from frontend.wire.headers import backend_request_headers
from frontend.wire.incoming import IncomingRequest
from frontend.wire.interfaces import BodySource, Exchange, OutgoingRequest
from frontend.wire.relay import Drain
from frontend.wire.spool import Recorder, Spool

__all__ = ["CONNECT_FAILURES", "Forwarder"]

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

#: The status of a back end's referral (421 Misdirected Request).
REFERRAL = 421
#: Referrals followed in a row; a third is a loop (DESIGN.md section 6).
MAX_REFERRALS = 2


class Forwarder:
    """Sends requests along their routes; one per front end."""

    def __init__(
        self,
        clock: IReactorTime,
        marks: UnavailableMarks,
        metrics: ProxyObserver,
        seen: dict[str, tuple[int | None, float]],
    ) -> None:
        self._clock = clock
        self._marks = marks
        self._metrics = metrics
        self._seen = seen

    async def send(
        self,
        rt: Runtime,
        request: IncomingRequest,
        creq: ClientRequest,
        route: Route,
        pending: list[defer.Deferred[Any]],
        on_end: Callable[[Callable[[], None]], None],
    ) -> tuple[Exchange, str]:
        """Send to the route's servers in turn; returns the response and its server.

        ``pending`` holds the Deferred being waited on (cancelled if the
        client goes away); ``on_end`` registers what to do when the request
        is over (closing a spool).
        """
        headers = backend_request_headers(
            request.end_to_end,
            client_address=creq.client_address,
            secure=creq.secure,
            frontend_name=rt.config.frontend.name,
        )
        body: BodySource | None = request if request.has_body else None
        recorder: Recorder | None = None
        if body is not None and route.referrals:
            # The first server may ask for the body, then refer: keep a copy
            # of what it takes (nothing if it refers before asking).
            spool = Spool()
            on_end(spool.close)
            body = recorder = Recorder(request, spool)
        expect_continue = body is not None and route.referrals
        candidates = self._available(route)
        tried: set[str] = set()
        referrals = 0
        while True:
            server = candidates.pop(0)
            tried.add(server.lower())
            out = OutgoingRequest(
                creq.method,
                route.target,
                headers,
                body=body,
                expect_continue=expect_continue,
            )
            d = rt.agent.send(server, out)
            pending.append(d)
            try:
                response = await d
            except CONNECT_FAILURES as e:
                route, candidates = await self._unreachable(rt, route, candidates, server, e)
                continue
            finally:
                pending.remove(d)
            listed = self._referral(route, response)
            if not listed:
                return response, server
            if response.body_sent and body is request:
                # a server named by a referral took the body (uncopied), then referred
                raise ReferralLoop(detail=f"{server} referred after taking the request body")
            referrals += 1
            self._metrics.referral_followed(route.vdir.path)
            if referrals > MAX_REFERRALS:
                raise ReferralLoop(detail=f"third referral in a row, from {server}")
            log.info(
                "{server} referred {uri} to {listed}",
                server=server,
                uri=creq.target.raw.decode("ascii"),
                listed=", ".join(listed),
            )
            if recorder is not None:
                if recorder.started:
                    # the body went (in part) to a back end: the next gets the copy
                    recorder.detach()
                    body = recorder.spool.replay(request.length)
                else:  # referred before the body: it goes on untouched, uncopied
                    body = request
            route = route._replace(servers=rt.router.referred(route, creq.target, listed, tried))
            candidates = self._available(route)

    async def _unreachable(
        self, rt: Runtime, route: Route, candidates: list[str], server: str, error: Exception
    ) -> tuple[Route, list[str]]:
        """``server`` could not be reached (nothing of the request reached it):
        where to try next, or raise.

        A replica is marked and the next in hash order tried; a mailbox server
        is looked up once more, bypassing the caches, in case the mailbox moved.
        """
        log.warn("back end {server} unreachable: {e}", server=server, e=error)
        self._seen[server] = (None, self._clock.seconds())
        if route.mark:
            self._marks.mark(server)
            self._metrics.server_marked(server)
            candidates = [s for s in candidates if s not in self._marks]
        if route.failover and candidates:
            return route, candidates
        if route.mark:
            raise NoServerAvailable(detail=f"last tried {server}: {error}") from error
        moved = await rt.router.reroute_refused(route)
        if moved is not None:
            log.info("mailbox moved to {servers}", servers=moved.servers)
            # once: the moved route has no owner to look up again
            return moved._replace(owner_key=None), list(moved.servers)
        raise error

    def _available(self, route: Route) -> list[str]:
        """The route's servers, without marked ones when marks apply."""
        if not route.mark:
            return list(route.servers)
        candidates = [s for s in route.servers if s not in self._marks]
        if not candidates:
            raise NoServerAvailable(detail=f"all of {route.servers} marked unavailable")
        return candidates

    @staticmethod
    def _referral(route: Route, response: Exchange) -> tuple[str, ...]:
        """The servers a 421 referral names (its body is drained); () otherwise."""
        if response.code != REFERRAL or not route.referrals:
            return ()
        listed = parse_replica_servers(response.header(b"x-replica-servers"))
        if listed:
            response.deliver_body(Drain())
        return listed
