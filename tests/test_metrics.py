"""The front end's Prometheus metrics: names, labels and values after calls."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families
from twisted.internet import defer
from twisted.internet.task import Clock

from frontend import __version__
from frontend.directory.lookups import CachedLookup
from frontend.ops.metrics import DURATION_BUCKETS, Load, Metrics

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def _samples(m: Metrics) -> Samples:
    """Every sample of ``m``'s text rendering, parsed back: (name, labels) -> value."""
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(m.render().decode())
        for s in family.samples
    }


def _value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def _types(m: Metrics) -> dict[str, str]:
    return {f.name: f.type for f in text_string_to_metric_families(m.render().decode())}


@dataclass
class FakeCache:
    name: str
    hits: int = 0
    misses: int = 0
    entries: int = 0

    def __len__(self) -> int:
        return self.entries


def test_every_feproxy_metric_family_is_exposed_with_its_type() -> None:
    """A fresh Metrics renders each feproxy family with the right type, even with no samples."""
    types = _types(Metrics())
    assert {k: v for k, v in types.items() if k.startswith("feproxy_")} == {
        "feproxy_requests": "counter",
        "feproxy_request_duration_seconds": "histogram",
        "feproxy_referrals": "counter",
        "feproxy_servers_marked": "counter",
        "feproxy_servers_unavailable": "gauge",
        "feproxy_ldap_queries": "counter",
        "feproxy_ldap_query_duration_seconds": "histogram",
        "feproxy_cache_hits": "counter",
        "feproxy_cache_misses": "counter",
        "feproxy_cache_entries": "gauge",
        "feproxy_build_info": "gauge",
    }


def test_request_finished_counts_by_vdir_status_and_backend() -> None:
    """requests_total is labelled vdir, status, backend; a missing back end is '-'."""
    m = Metrics()
    m.request_finished("/exchange", 200, "ex1.example.com", 0.01)
    m.request_finished("/exchange", 200, "ex1.example.com", 0.02)
    m.request_finished("/exchange", 404, None, 0.001)
    m.request_finished("/apps", 502, "ex3.example.com", 0.5)
    s = _samples(m)
    name = "feproxy_requests_total"
    assert _value(s, name, vdir="/exchange", status="200", backend="ex1.example.com") == 2
    assert _value(s, name, vdir="/exchange", status="404", backend="-") == 1
    assert _value(s, name, vdir="/apps", status="502", backend="ex3.example.com") == 1
    assert sum(v for (n, _), v in s.items() if n == name) == 4


def test_request_duration_histogram_has_buckets_from_1ms_to_60s() -> None:
    """Latency buckets span 1 ms..60 s, bounds are inclusive, and sum/count add up."""
    assert DURATION_BUCKETS[0] == 0.001
    assert DURATION_BUCKETS[-1] == 60.0
    assert list(DURATION_BUCKETS) == sorted(DURATION_BUCKETS)
    m = Metrics()
    for seconds in (0.0005, 0.001, 0.3, 61.0):
        m.request_finished("/public", 200, "ex1.example.com", seconds)
    s = _samples(m)
    bucket = "feproxy_request_duration_seconds_bucket"
    assert _value(s, bucket, vdir="/public", le="0.001") == 2
    assert _value(s, bucket, vdir="/public", le="0.25") == 2
    assert _value(s, bucket, vdir="/public", le="0.5") == 3
    assert _value(s, bucket, vdir="/public", le="60.0") == 3
    assert _value(s, bucket, vdir="/public", le="+Inf") == 4
    assert _value(s, "feproxy_request_duration_seconds_count", vdir="/public") == 4
    total = _value(s, "feproxy_request_duration_seconds_sum", vdir="/public")
    assert total is not None
    assert abs(total - 61.3015) < 1e-9


def test_referral_followed_counts_by_vdir() -> None:
    """referrals_total counts each followed referral under its virtual directory."""
    m = Metrics()
    m.referral_followed("/apps")
    m.referral_followed("/apps")
    m.referral_followed("/public")
    s = _samples(m)
    assert _value(s, "feproxy_referrals_total", vdir="/apps") == 2
    assert _value(s, "feproxy_referrals_total", vdir="/public") == 1


def test_server_marked_counts_by_server_case_insensitively() -> None:
    """servers_marked_total folds server names to lower case, as the marks do."""
    m = Metrics()
    m.server_marked("EX2.example.com")
    m.server_marked("ex2.example.com")
    s = _samples(m)
    assert _value(s, "feproxy_servers_marked_total", server="ex2.example.com") == 2
    assert _value(s, "feproxy_servers_marked_total", server="EX2.example.com") is None


def test_servers_unavailable_gauge_counts_current_marks_at_scrape_time() -> None:
    """The unavailable gauge is read from the marks callable, ignoring expired marks."""
    now = [1000.0]
    marks: dict[str, float] = {}
    m = Metrics(marks=lambda: marks, clock=lambda: now[0])
    assert _value(_samples(m), "feproxy_servers_unavailable") == 0
    marks.update({"ex2.example.com": 1600.0, "ex3.example.com": 1300.0})
    assert _value(_samples(m), "feproxy_servers_unavailable") == 2
    now[0] = 1300.0
    assert _value(_samples(m), "feproxy_servers_unavailable") == 1
    now[0] = 1601.0
    assert _value(_samples(m), "feproxy_servers_unavailable") == 0


def test_ldap_query_counts_results_and_latency_by_operation() -> None:
    """ldap_queries_total has result ok/error (both from an operation's first query); the
    latency histogram is per operation."""
    m = Metrics()
    m.ldap_query("find_user", 0.004, ok=True)
    m.ldap_query("find_user", 0.006, ok=True)
    m.ldap_query("find_user", 5.0, ok=False)
    m.ldap_query("tree_replicas", 0.002, ok=True)
    s = _samples(m)
    q = "feproxy_ldap_queries_total"
    assert _value(s, q, operation="find_user", result="ok") == 2
    assert _value(s, q, operation="find_user", result="error") == 1
    assert _value(s, q, operation="tree_replicas", result="ok") == 1
    assert _value(s, q, operation="tree_replicas", result="error") == 0  # there, for rate()
    assert _value(s, q, operation="server_of_store", result="ok") is None  # never queried
    h = "feproxy_ldap_query_duration_seconds"
    assert _value(s, f"{h}_count", operation="find_user") == 3
    assert _value(s, f"{h}_bucket", operation="find_user", le="0.005") == 1
    assert _value(s, f"{h}_bucket", operation="find_user", le="0.01") == 2
    assert _value(s, f"{h}_bucket", operation="tree_replicas", le="0.0025") == 1


def test_cache_collector_follows_a_changing_set_of_caches() -> None:
    """Cache series come from the callable at each scrape: new caches appear, old ones go."""
    current: list[Any] = [FakeCache("user", hits=10, misses=3, entries=3)]
    m = Metrics(caches=lambda: current)
    s = _samples(m)
    assert _value(s, "feproxy_cache_hits_total", cache="user") == 10
    assert _value(s, "feproxy_cache_misses_total", cache="user") == 3
    assert _value(s, "feproxy_cache_entries", cache="user") == 3
    current[0].hits = 11
    assert _value(_samples(m), "feproxy_cache_hits_total", cache="user") == 11
    # a reload: new caches, counts start again
    current = [FakeCache("user", hits=1, misses=1, entries=1), FakeCache("tree", entries=2)]
    s = _samples(m)
    assert _value(s, "feproxy_cache_hits_total", cache="user") == 1
    assert _value(s, "feproxy_cache_entries", cache="tree") == 2
    current = []
    s = _samples(m)
    assert not [k for k in s if k[0].startswith("feproxy_cache_")]


def test_caches_sharing_a_name_are_summed() -> None:
    """Two caches with one name give one series (duplicates would break the exposition)."""
    caches = [FakeCache("user", 1, 2, 3), FakeCache("user", 10, 20, 30)]
    s = _samples(Metrics(caches=lambda: caches))
    assert _value(s, "feproxy_cache_hits_total", cache="user") == 11
    assert _value(s, "feproxy_cache_misses_total", cache="user") == 22
    assert _value(s, "feproxy_cache_entries", cache="user") == 33


def test_cache_collector_reads_real_cached_lookups() -> None:
    """A CachedLookup's hits, misses and size show up under its name."""
    clock = Clock()

    def fetch(key: str) -> defer.Deferred[str]:
        return defer.succeed(f"value of {key}")

    cache: CachedLookup[str, str] = CachedLookup(
        "mailbox", fetch, clock, ttl=600, negative_ttl=60, maxsize=10
    )
    for key in ("a", "a", "b", "a"):
        defer.ensureDeferred(cache.get(key))
    s = _samples(Metrics(caches=lambda: [cache]))
    assert _value(s, "feproxy_cache_hits_total", cache="mailbox") == 2
    assert _value(s, "feproxy_cache_misses_total", cache="mailbox") == 2
    assert _value(s, "feproxy_cache_entries", cache="mailbox") == 2


def test_each_metrics_has_a_registry_of_its_own() -> None:
    """Two Metrics never share counts, and nothing lands in the global registry."""
    a, b = Metrics(), Metrics()
    a.referral_followed("/apps")
    assert a.registry is not b.registry
    assert _value(_samples(a), "feproxy_referrals_total", vdir="/apps") == 1
    assert _value(_samples(b), "feproxy_referrals_total", vdir="/apps") is None
    assert REGISTRY.get_sample_value("feproxy_referrals_total", {"vdir": "/apps"}) is None


def test_label_values_are_escaped_in_the_exposition() -> None:
    """Quotes, backslashes and newlines in label values survive a render and parse."""
    m = Metrics()
    odd = 'ex"1\\\n.example.com'
    m.request_finished("/exchange", 200, odd, 0.01)
    s = _samples(m)
    assert _value(s, "feproxy_requests_total", vdir="/exchange", status="200", backend=odd) == 1


def test_build_info_is_1_with_the_version_in_a_label() -> None:
    """feproxy_build_info{version} is 1, labelled with the package's version by default."""
    s = _samples(Metrics())
    assert _value(s, "feproxy_build_info", version=__version__) == 1
    assert _value(_samples(Metrics(version="9.8.7")), "feproxy_build_info", version="9.8.7") == 1


def test_load_gauges_are_read_at_each_scrape() -> None:
    """Open and maximum connections and requests in flight come from ``load`` when scraped."""
    now = [Load(open_connections=3, max_connections=10_000, requests_in_flight=2)]
    m = Metrics(load=lambda: now[0])
    s = _samples(m)
    assert _value(s, "feproxy_open_connections") == 3
    assert _value(s, "feproxy_max_connections") == 10_000
    assert _value(s, "feproxy_requests_in_flight") == 2
    now[0] = Load(open_connections=0, max_connections=50, requests_in_flight=0)
    s = _samples(m)
    assert _value(s, "feproxy_open_connections") == 0
    assert _value(s, "feproxy_max_connections") == 50
    assert "feproxy_open_connections" not in _types(Metrics())  # no load, no gauges
