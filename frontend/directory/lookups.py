"""Directory lookups behind bounded TTL caches, on an injected clock.

Every cache is a ``cachetools.TLRUCache`` whose timer is the reactor's clock,
touched only on the reactor thread.  Concurrent misses for the same key share
one directory query.  Answers that something does not exist are cached for a
shorter time (``negative_ttl``) so that a new mailbox is found soon.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

from cachetools import TLRUCache
from twisted.internet import defer
from twisted.internet.interfaces import IReactorTime
from twisted.python.failure import Failure

from frontend.directory.interfaces import CacheStats, DirectorySearch, UserEntry

__all__ = ["CachedLookup", "Lookups", "ReferralKey"]

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

#: A referral cache key: (virtual directory path, the folder's path segments).
ReferralKey = tuple[str, tuple[str, ...]]


class CachedLookup(Generic[K, V]):
    """One cache: key -> value, filled by ``fetch(key)`` on a miss."""

    def __init__(
        self,
        name: str,
        fetch: Callable[[K], Awaitable[V]],
        clock: IReactorTime,
        *,
        ttl: float,
        negative_ttl: float,
        maxsize: int,
    ) -> None:
        self.name = name
        self._fetch = fetch

        def ttu(_key: K, value: V, now: float) -> float:
            return now + (ttl if value not in (None, ()) else negative_ttl)

        self._cache: TLRUCache[K, V] = TLRUCache(maxsize=maxsize, ttu=ttu, timer=clock.seconds)
        self._inflight: dict[K, list[defer.Deferred[V]]] = {}
        self.hits = 0
        self.misses = 0

    async def get(self, key: K, *, fresh: bool = False) -> V:
        """The value for ``key``; ``fresh`` bypasses (and then refills) the cache."""
        if not fresh:
            try:
                value = self._cache[key]
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

    async def _load(self, key: K, waiters: list[defer.Deferred[V]]) -> None:
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

    def _done(self, key: K, waiters: list[defer.Deferred[V]]) -> None:
        if self._inflight.get(key) is waiters:
            del self._inflight[key]

    def peek(self, key: K) -> V | None:
        """The cached value for ``key``, or None; never fetches."""
        value = self._cache.get(key)
        if value is not None:
            self.hits += 1
        return value

    def put(self, key: K, value: V) -> None:
        self._cache[key] = value

    def clear(self) -> None:
        self._cache.clear()

    def __len__(self) -> int:
        return len(self._cache)


class Lookups:
    """The front end's cached view of the directory."""

    def __init__(
        self, directory: DirectorySearch, clock: IReactorTime, *, ttl: float, maxsize: int
    ) -> None:
        negative = min(ttl, 60.0)

        def cache(name: str, fetch: Callable[[K], Awaitable[V]]) -> CachedLookup[K, V]:
            return CachedLookup(name, fetch, clock, ttl=ttl, negative_ttl=negative, maxsize=maxsize)

        d = directory

        def tree_replicas(tree: str | None) -> Awaitable[tuple[str, ...]]:
            return d.default_tree_replicas() if tree is None else d.tree_replicas(tree)

        self.user: CachedLookup[str, UserEntry | None] = cache("user", d.find_user)
        self.mailbox: CachedLookup[str, UserEntry | None] = cache("mailbox", d.find_mailbox)
        self.store_server: CachedLookup[str, str | None] = cache("store_server", d.server_of_store)
        self.public_server: CachedLookup[str, str | None] = cache(
            "public_server", d.public_server_for_mailbox_store
        )
        self.tree: CachedLookup[str | None, tuple[str, ...]] = cache("tree", tree_replicas)
        # Filled only by put() (from a back end's referral), never fetched.
        self.referral: CachedLookup[ReferralKey, tuple[str, ...] | None] = cache(
            "referral", _never_fetched
        )

    @property
    def caches(self) -> tuple[CacheStats, ...]:
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
        for c in (
            self.user,
            self.mailbox,
            self.store_server,
            self.public_server,
            self.tree,
            self.referral,
        ):
            c.clear()


async def _never_fetched(_key: ReferralKey) -> tuple[str, ...] | None:
    return None
