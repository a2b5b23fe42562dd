"""Prometheus metrics of one front end, on a registry of its own.

The request path calls a few cheap methods (:meth:`Metrics.request_finished`,
:meth:`Metrics.referral_followed`, :meth:`Metrics.server_marked`,
:meth:`Metrics.ldap_query`).  They only bump plain counters kept in dicts
keyed by label tuples: no ``prometheus_client`` child lookup, no lock, no
string formatting.  Everything is turned into metric families at scrape time
by one collector registered on the front end's own ``CollectorRegistry``
(never the global one, so that tests and several front ends in one process do
not clash).

Threading: like the caches, these counters belong to the reactor thread.
Call the methods there (an LDAP query is timed around its Deferred, not in the
worker thread) and scrape there (the admin listener runs on the reactor).

Metrics exposed:

- ``feproxy_requests_total{vdir,status,backend}`` (backend ``-`` when none)
- ``feproxy_request_duration_seconds{vdir}`` (histogram, 1 ms to 60 s)
- ``feproxy_referrals_total{vdir}``
- ``feproxy_servers_marked_total{server}``
- ``feproxy_servers_unavailable`` (gauge, from the current marks)
- ``feproxy_ldap_queries_total{operation,result}`` (result ``ok``/``error``,
  both from an operation's first query on)
- ``feproxy_ldap_query_duration_seconds{operation}`` (histogram)
- ``feproxy_cache_hits_total{cache}``, ``feproxy_cache_misses_total{cache}``,
  ``feproxy_cache_entries{cache}``
- ``feproxy_open_connections``, ``feproxy_max_connections`` (client connections
  open now, and the ``max_connections`` limit), ``feproxy_requests_in_flight``
  (gauges read from ``load`` at scrape time; absent without it)
- ``feproxy_build_info{version}`` (always 1: the version in a label)

The cache counters are read from the caches themselves at scrape time.  A
reload builds new caches whose counts start at zero: the two ``_total``
series then go down, which Prometheus treats as a counter reset (``rate()``
and ``increase()`` stay right).  Plus the standard ``process_*`` and
``python_info`` metrics of ``prometheus_client``.
"""

from __future__ import annotations

import time
from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, PlatformCollector, ProcessCollector
from prometheus_client.exposition import generate_latest
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.utils import floatToGoString

from frontend import __version__
from frontend.directory.interfaces import CacheStats

__all__ = ["DURATION_BUCKETS", "Load", "Metrics"]

#: Upper bounds (seconds) of the latency histograms' buckets, +Inf implied.
DURATION_BUCKETS: tuple[float, ...] = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
)
_LE = (*tuple(floatToGoString(b) for b in DURATION_BUCKETS), "+Inf")

# A histogram series: one count per bucket (not cumulative; the last one is
# +Inf), then the sum of the observed values.
_Series = list[float]


def _observe(table: dict[str, _Series], key: str, seconds: float) -> None:
    """Count ``seconds`` in the histogram series ``table[key]``."""
    series = table.get(key)
    if series is None:
        series = table[key] = [0.0] * (len(_LE) + 1)
    series[bisect_left(DURATION_BUCKETS, seconds)] += 1
    series[-1] += seconds


def _histogram(name: str, doc: str, label: str, table: dict[str, _Series]) -> Metric:
    family = HistogramMetricFamily(name, doc, labels=[label])
    for key, series in list(table.items()):
        buckets: list[tuple[str, float]] = []
        total = 0.0
        for le, count in zip(_LE, series, strict=False):
            total += count
            buckets.append((le, total))
        family.add_metric([key], buckets, sum_value=series[-1])
    return family


@dataclass(frozen=True)
class Load:
    """How busy the front end's process is now (read at each scrape)."""

    open_connections: int
    max_connections: int
    requests_in_flight: int


class Metrics:
    """The front end's metrics: cheap recording methods and a text rendering.

    ``marks`` gives the current unavailable marks (server -> expiry time on
    ``clock``); ``caches`` gives the current caches, each with ``name``,
    ``hits``, ``misses`` and a length (:class:`frontend.directory.interfaces.CacheStats`);
    ``load`` gives the client connections and requests of the moment (no
    such gauges without it).  They are called at every scrape, so they may
    change (a reload rebuilds the caches).  ``version`` goes into
    ``feproxy_build_info``.
    """

    def __init__(
        self,
        *,
        marks: Callable[[], Mapping[str, float]] = dict,
        caches: Callable[[], Iterable[CacheStats]] = tuple,
        load: Callable[[], Load] | None = None,
        clock: Callable[[], float] = time.time,
        version: str = __version__,
    ) -> None:
        self._marks = marks
        self._caches = caches
        self._load = load
        self._clock = clock
        self._version = version
        self._requests: dict[tuple[str, int, str | None], int] = {}
        self._request_seconds: dict[str, _Series] = {}
        self._referrals: dict[str, int] = {}
        self._marked: dict[str, int] = {}
        self._ldap: dict[tuple[str, bool], int] = {}
        self._ldap_seconds: dict[str, _Series] = {}
        self.registry = CollectorRegistry()
        self.registry.register(self)
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)

    # -- recording (request path, reactor thread) ---------------------------

    def request_finished(self, vdir: str, status: int, backend: str | None, seconds: float) -> None:
        """Count one answered request: its virtual directory, status, back end, time.

        ``vdir`` must come from a bounded set (the configured path, or ``-``
        when no virtual directory matched), never the request's own path.
        """
        key = (vdir, status, backend)
        self._requests[key] = self._requests.get(key, 0) + 1
        _observe(self._request_seconds, vdir, seconds)

    def referral_followed(self, vdir: str) -> None:
        """Count one referral (421) that the front end followed."""
        self._referrals[vdir] = self._referrals.get(vdir, 0) + 1

    def server_marked(self, server: str) -> None:
        """Count one unavailable mark put on ``server`` (compared case-insensitively)."""
        server = server.lower()
        self._marked[server] = self._marked.get(server, 0) + 1

    def ldap_query(self, operation: str, seconds: float, *, ok: bool) -> None:
        """Count one directory query: its operation, time, and whether it succeeded."""
        key = (operation, ok)
        self._ldap[key] = self._ldap.get(key, 0) + 1
        _observe(self._ldap_seconds, operation, seconds)

    # -- exposition ---------------------------------------------------------

    def render(self) -> bytes:
        """Every metric in Prometheus text format (``text/plain; version=0.0.4``)."""
        return generate_latest(self.registry)

    def collect(self) -> Iterator[Metric]:
        """The front end's own metric families, as they are now (the collector protocol)."""
        requests = CounterMetricFamily(
            "feproxy_requests",
            "Requests answered, by virtual directory, status and back end.",
            labels=["vdir", "status", "backend"],
        )
        for (vdir, status, backend), n in list(self._requests.items()):
            requests.add_metric([vdir, str(status), backend or "-"], n)
        yield requests
        yield _histogram(
            "feproxy_request_duration_seconds",
            "Time from receiving a request to its last byte sent, by virtual directory.",
            "vdir",
            self._request_seconds,
        )
        yield _counter(
            "feproxy_referrals",
            "Referrals (421 with X-Replica-Servers) followed, by virtual directory.",
            "vdir",
            self._referrals,
        )
        yield _counter(
            "feproxy_servers_marked",
            "Times a back end was marked unavailable, by server.",
            "server",
            self._marked,
        )
        now = self._clock()
        unavailable = sum(1 for until in self._marks().values() if until > now)
        yield GaugeMetricFamily(
            "feproxy_servers_unavailable",
            "Back ends currently marked unavailable.",
            value=unavailable,
        )
        queries = CounterMetricFamily(
            "feproxy_ldap_queries",
            "Directory queries, by operation and result (ok or error).",
            labels=["operation", "result"],
        )
        # Both results of every operation seen: an error series that starts
        # at 0 lets rate() and increase() see the first error.
        for operation in sorted({operation for operation, _ in self._ldap}):
            for ok, result in ((True, "ok"), (False, "error")):
                queries.add_metric([operation, result], self._ldap.get((operation, ok), 0))
        yield queries
        yield _histogram(
            "feproxy_ldap_query_duration_seconds",
            "Directory query time, by operation.",
            "operation",
            self._ldap_seconds,
        )
        yield from _cache_families(self._caches())
        if self._load is not None:
            yield from _load_families(self._load())
        build = GaugeMetricFamily(
            "feproxy_build_info",
            "The running feproxy: its version in a label, always 1.",
            labels=["version"],
        )
        build.add_metric([self._version], 1)
        yield build


def _load_families(load: Load) -> Iterator[Metric]:
    """The gauges of the client connections and requests of the moment."""
    yield GaugeMetricFamily(
        "feproxy_open_connections",
        "Client connections open now, in this process.",
        value=load.open_connections,
    )
    yield GaugeMetricFamily(
        "feproxy_max_connections",
        "Client connections this process accepts at most (frontend.max_connections).",
        value=load.max_connections,
    )
    yield GaugeMetricFamily(
        "feproxy_requests_in_flight",
        "Requests received and not yet answered in full, in this process.",
        value=load.requests_in_flight,
    )


def _counter(name: str, doc: str, label: str, table: dict[str, int]) -> Metric:
    family = CounterMetricFamily(name, doc, labels=[label])
    for value, n in list(table.items()):
        family.add_metric([value], n)
    return family


def _cache_families(caches: Iterable[CacheStats]) -> Iterator[Metric]:
    """Hits, misses and entries per cache; caches sharing a name are summed."""
    totals: dict[str, list[int]] = {}
    for cache in caches:
        t = totals.setdefault(cache.name, [0, 0, 0])
        t[0] += cache.hits
        t[1] += cache.misses
        t[2] += len(cache)
    hits = CounterMetricFamily(
        "feproxy_cache_hits",
        "Cache hits, by cache (restarts from zero when a reload rebuilds the caches).",
        labels=["cache"],
    )
    misses = CounterMetricFamily(
        "feproxy_cache_misses",
        "Cache misses, by cache (restarts from zero when a reload rebuilds the caches).",
        labels=["cache"],
    )
    entries = GaugeMetricFamily(
        "feproxy_cache_entries", "Entries held, by cache.", labels=["cache"]
    )
    for name, (h, m, e) in totals.items():
        hits.add_metric([name], h)
        misses.add_metric([name], m)
        entries.add_metric([name], e)
    yield hits
    yield misses
    yield entries
