"""Directory lookups behind bounded TTL caches, on an injected clock.

Every cache is a ``cachetools.TLRUCache`` whose timer is the reactor's clock,
touched only on the reactor thread.  Concurrent misses for the same key share
one directory query.  Answers that something does not exist are cached for a
shorter time (``negative_ttl``) so that a new mailbox is found soon.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Hashable
from typing import Any, Generic, TypeVar

from cachetools import TLRUCache
from twisted.internet import defer
from twisted.internet.interfaces import IReactorTime
from twisted.python.failure import Failure

__all__ = ["CachedLookup", "Lookups"]

V = TypeVar("V")


class CachedLookup(Generic[V]):
    """One cache: key -> value, filled by ``fetch(key)`` on a miss."""

    def __init__(
        self,
        name: str,
        fetch: Callable[[Any], Awaitable[V]],
        clock: IReactorTime,
        *,
        ttl: float,
        negative_ttl: float,
        maxsize: int,
    ) -> None:
        self.name = name
        self._fetch = fetch

        def ttu(_key: Any, value: Any, now: float) -> float:
            return now + (ttl if value not in (None, ()) else negative_ttl)

        self._cache: TLRUCache[Hashable, Any] = TLRUCache(
            maxsize=maxsize, ttu=ttu, timer=clock.seconds
        )
        self._inflight: dict[Hashable, list[defer.Deferred[V]]] = {}
        self.hits = 0
        self.misses = 0

    async def get(self, key: Hashable, *, fresh: bool = False) -> V:
        """The value for ``key``; ``fresh`` bypasses (and then refills) the cache."""
        if not fresh:
            try:
                value: V = self._cache[key]
            except KeyError:
                pass
            else:
                self.hits += 1
                return value
        self.misses += 1
        mine: defer.Deferred[V] = defer.Deferred()
        waiters = self._inflight.get(key)
        if waiters is not None and not fresh:
            waiters.append(mine)
        else:
            waiters = [mine]
            self._inflight[key] = waiters
            defer.ensureDeferred(self._load(key, waiters))
        return await mine

    async def _load(self, key: Hashable, waiters: list[defer.Deferred[V]]) -> None:
        """Fetch once for every waiter; a cancelled waiter is simply skipped."""
        try:
            value = await self._fetch(key)
        except Exception:  # handed to every waiter, who maps it to a status
            failure = Failure()
            self._done(key, waiters)
            for w in waiters:
                w.errback(failure)
            return
        self._done(key, waiters)
        self._cache[key] = value
        for w in waiters:
            w.callback(value)

    def _done(self, key: Hashable, waiters: list[defer.Deferred[V]]) -> None:
        if self._inflight.get(key) is waiters:
            del self._inflight[key]

    def peek(self, key: Hashable) -> V | None:
        """The cached value for ``key``, or None; never fetches."""
        value: V | None = self._cache.get(key)
        if value is not None:
            self.hits += 1
        return value

    def put(self, key: Hashable, value: V) -> None:
        self._cache[key] = value

    def clear(self) -> None:
        self._cache.clear()

    def __len__(self) -> int:
        return len(self._cache)


class Lookups:
    """The front end's cached view of the directory."""

    def __init__(self, directory: Any, clock: IReactorTime, *, ttl: float, maxsize: int) -> None:
        negative = min(ttl, 60.0)

        def cache(name: str, fetch: Callable[[Any], Awaitable[Any]]) -> CachedLookup[Any]:
            return CachedLookup(name, fetch, clock, ttl=ttl, negative_ttl=negative, maxsize=maxsize)

        d = directory
        self.user = cache("user", lambda login: d.find_user(login))
        self.mailbox = cache("mailbox", lambda address: d.find_mailbox(address))
        self.store_server = cache("store_server", lambda dn: d.server_of_store(dn))
        self.public_server = cache(
            "public_server", lambda dn: d.public_server_for_mailbox_store(dn)
        )
        self.tree = cache(
            "tree",
            lambda tree: d.default_tree_replicas() if tree is None else d.tree_replicas(tree),
        )
        self.referral = cache("referral", _never_fetched)

    @property
    def caches(self) -> tuple[CachedLookup[Any], ...]:
        return (
            self.user,
            self.mailbox,
            self.store_server,
            self.public_server,
            self.tree,
            self.referral,
        )

    def clear(self) -> None:
        """Empty every cache (configuration or directory changed)."""
        for c in self.caches:
            c.clear()


async def _never_fetched(key: Any) -> Any:
    return None
