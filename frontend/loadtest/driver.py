"""The live load generator: users' GETs with bounded concurrency, on the reactor.

A :class:`Driver` sends rounds of requests: in each round every user asks
for the folder once, in a shuffled order, through at most ``concurrency``
requests in flight (that many coroutines pull users from one iterator).
Each request carries the user's Basic credentials; its answer is attributed
to the server named in ``X-Backend-Server`` and kept as an
:class:`Observation`.  Connections are kept alive in a pool of the driver's
own (several users share a connection, as users behind one proxy would).
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass
from http import HTTPStatus
from typing import TYPE_CHECKING, Final, cast

import treq
from twisted.internet.defer import CancelledError, Deferred, ensureDeferred, gatherResults
from twisted.python.failure import Failure
from twisted.web.client import Agent, HTTPConnectionPool
from twisted.web.http_headers import Headers

from frontend.loadtest.progress import NullProgress, Progress

if TYPE_CHECKING:
    from treq._types import _ITreqReactor
    from treq.response import _Response

    from frontend.ops.reactor import IServeReactor

__all__ = ["Credential", "Driver", "Observation", "basic_authorization"]

_SERVER_HEADER: Final = b"X-Backend-Server"


@dataclass(frozen=True)
class Credential:
    """A user as the load test knows it; ``token`` only when the test made the user."""

    login: str
    password: str
    token: bytes | None = None


@dataclass(frozen=True)
class Observation:
    """One request's outcome: which server answered (None on error), status, latency."""

    user: int
    round: int
    server: str | None
    status: int | None
    error: str | None
    latency: float

    @property
    def ok(self) -> bool:
        """A 2xx answer that names its server."""
        return (
            self.status is not None
            and HTTPStatus.OK <= self.status < HTTPStatus.MULTIPLE_CHOICES
            and self.server is not None
        )


def basic_authorization(login: str, password: str) -> bytes:
    """The ``Authorization`` header value for Basic credentials (UTF-8)."""
    raw = f"{login}:{password}".encode()
    return b"Basic " + base64.b64encode(raw)


class Driver:
    """Sends the users' requests to ``url``; observations accumulate in order."""

    def __init__(
        self,
        reactor: IServeReactor,
        url: str,
        users: Sequence[Credential],
        *,
        concurrency: int,
        request_timeout: float = 30.0,
        progress: Progress | None = None,
    ) -> None:
        self._reactor = reactor
        self._url = url
        self._authorizations = [basic_authorization(u.login, u.password) for u in users]
        self._concurrency = concurrency
        self._timeout = request_timeout
        self._progress = progress if progress is not None else NullProgress()
        self._pool = HTTPConnectionPool(reactor, persistent=True)
        self._pool.maxPersistentPerHost = concurrency
        agent = Agent(reactor, connectTimeout=request_timeout, pool=self._pool)
        self._client = treq.client.HTTPClient(agent)
        self.observations: list[Observation] = []
        self._stopping = False
        self._in_flight: set[Deferred[_Response]] = set()

    async def round(self, number: int, order: Sequence[int]) -> None:
        """Send one request for each user index in ``order``, ``concurrency`` at a time.

        Cancelling the round stops it: no new request starts, those in flight
        are cancelled (and not recorded), and the round fails with
        CancelledError at once.
        """
        pending = iter(order)

        async def worker() -> None:
            for user in pending:
                if self._stopping:
                    return
                observation = await self._one(user, number)
                if observation is None:
                    return
                self.observations.append(observation)
                self._progress.update(1)

        workers = [ensureDeferred(worker()) for _ in range(min(self._concurrency, len(order)))]
        everything = gatherResults(workers, consumeErrors=True)
        done: Deferred[None] = Deferred(lambda _: self.stop())

        def relay(result: object) -> None:
            if done.called:
                return  # cancelled already; the workers' outcome does not matter
            if isinstance(result, Failure):
                done.errback(result)
            else:
                done.callback(None)

        everything.addBoth(relay)
        await done
        if self._stopping:  # the workers may have finished within the cancellation
            raise CancelledError()

    def stop(self) -> None:
        """Start no more requests and cancel those in flight."""
        self._stopping = True
        for request in list(self._in_flight):
            request.cancel()

    async def _one(self, user: int, number: int) -> Observation | None:
        """One request's observation; None if the driver was stopped meanwhile."""
        started = self._reactor.seconds()
        headers = Headers({b"Authorization": [self._authorizations[user]]})
        request = self._client.get(
            self._url,
            headers=headers,
            allow_redirects=False,
            timeout=self._timeout,
            reactor=cast("_ITreqReactor", self._reactor),  # treq names its own interface
        )
        self._in_flight.add(request)
        try:
            response = await request
            await treq.content(response)
        except Exception as error:  # any failure of one request is recorded, not raised
            if self._stopping:
                return None
            latency = self._reactor.seconds() - started
            return Observation(user, number, None, None, type(error).__name__, latency)
        finally:
            self._in_flight.discard(request)
        if self._stopping:
            return None
        named = response.headers.getRawHeaders(_SERVER_HEADER)
        server = named[0].decode("latin-1") if named else None
        latency = self._reactor.seconds() - started
        return Observation(user, number, server, response.code, None, latency)

    async def close(self) -> None:
        """Close the kept-alive connections."""
        await self._pool.closeCachedConnections()
