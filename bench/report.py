"""Printing the benchmark's results: header, one table per group, targets last."""

from __future__ import annotations

import math
import sys
from typing import TYPE_CHECKING

from bench.bursts import BURST_LABELS
from bench.directory import OpCount
from bench.load import LoadResult
from bench.targets import checks, gbps, ratio, targets
from bench.throughput import BIG_LABELS, SMALL_LABELS

if TYPE_CHECKING:
    from bench.options import Results

__all__ = ["header", "summary"]

PEERS = (("reverse_proxy", "ReverseProxyResource"), ("haproxy", "HAProxy"), ("nginx", "nginx"))


def _rounds(n: int) -> str:
    return "1 round" if n == 1 else f"{n} rounds"


def header(r: Results) -> None:
    o = r.options
    p = print
    p(
        f"feproxy benchmark: {r.tool}, {o.duration} s per run after {o.warmup} s warm-up,"
        f" {_rounds(o.rounds)} interleaved, {o.connections} connections, {r.pinning}"
    )
    versions = ", ".join(f"{k} {v}" for k, v in r.versions.items())
    p(f"  peers: {versions}; origin: nginx serving static files; open files limit {r.nofile}")
    p("  kernel (read, not changed): " + ", ".join(f"{k} {v}" for k, v in r.kernel.items()))
    sys.stdout.flush()


def _row(label: str, x: LoadResult, first: str) -> str:
    errors = ", ".join(f"{k} {v}" for k, v in x.errors.items() if v) or "0"
    return (
        f"  {label:<30} {first:>10} {x.p50_ms:>8.2f} {x.p90_ms:>8.2f} {x.p99_ms:>8.2f}"
        f" {x.requests:>9}  {errors}"
    )


def _spread(x: LoadResult) -> str:
    if len(x.rounds_rps) <= 1:  # one round has no spread
        return ""
    return "  (rounds " + " / ".join(f"{v:,.0f}" for v in x.rounds_rps) + ")"


def _columns(first: str) -> str:
    names = f"{'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} {'requests':>9}"
    return f"  {'':<30} {first:>10} {names}  errors"


def _cpu_table(
    cpu: dict[str, dict[str, float]], rows: dict[str, tuple[str, str]], unit: str = "request"
) -> None:
    """CPU time per request of the row's proxy, the origin and slapd, from /proc.

    "others" are the other (idle) servers; every process and thread counts.
    """
    print(f"  CPU per {unit}, microseconds (user+system, from /proc, all processes and threads):")
    headings = ("the proxy", "origin", "slapd", "others", "all servers")
    print(f"  {'':<30} " + " ".join(f"{h:>11}" for h in headings))
    for key, (label, server) in rows.items():
        if key not in cpu:
            continue
        used = cpu[key]
        own = used.get(server) if server != "origin" else None
        shown = [own, used.get("origin"), used.get("slapd")]
        # A difference of sums can come out a hair below zero: never print "-0".
        others = max(0.0, sum(used.values()) - sum(v for v in shown if v is not None))
        cells = [f"{'-':>11}" if v is None else f"{v:>11.0f}" for v in [*shown, others]]
        print(f"  {label:<30} " + " ".join(cells) + f" {sum(used.values()):>11.0f}")


def _small(r: Results) -> None:
    p = print
    users = r.options.users
    rows = {k: (v[0].replace("many", str(users)), v[1]) for k, v in SMALL_LABELS.items()}
    p("1 KiB responses: GET /apps/Projects/ with Basic credentials, each proxy -> nginx origin")
    p(_columns("req/s"))
    for key, x in r.small.items():
        p(_row(rows[key][0], x, f"{x.rps:,.0f}") + _spread(x))
    for key, (label, _) in rows.items():
        full = r.small.get(key)
        if not key.startswith("full_") or full is None:
            continue
        parts = [
            f"{ratio(full.rps, r.small[peer].rps):.2f}x {name}"
            for peer, name in PEERS
            if peer in r.small
        ]
        p(
            f"  {label}: req/s "
            + ", ".join(parts)
            + f"; p99/p50 {ratio(full.p99_ms, full.p50_ms):.2f}"
        )
    _cpu_table(r.cpu.get("small", {}), rows)
    p("")


def _big(r: Results) -> None:
    p = print
    p("1 MiB responses: GET /apps/Projects/1m.bin with Basic credentials, each proxy -> origin")
    p(_columns("GB/s"))
    for key, x in r.big.items():
        p(_row(BIG_LABELS[key][0], x, f"{gbps(x):.3f}") + _spread(x))
    full = r.big.get("full")
    if full is not None:
        parts = [
            f"{ratio(gbps(full), gbps(r.big[peer])):.2f}x {name}"
            for peer, name in PEERS
            if peer in r.big
        ]
        p("  feproxy: GB/s " + ", ".join(parts))
        m = r.memory
        p(
            f"  feproxy RSS: {m['rss_before_mib']:.1f} MiB before, peak {m['peak_rss_mib']:.1f}"
            f" MiB (VmHWM {m['vmhwm_mib']:.1f}), {m['rss_after_mib']:.1f} MiB after;"
            f" growth {m['growth_mib']:.1f} MiB"
        )
    _cpu_table(r.cpu.get("big", {}), BIG_LABELS)
    p("")


def _ms(value: float) -> str:
    return f"{value:>9.1f}" if math.isfinite(value) else f"{'failed':>9}"


def _burst(r: Results) -> None:
    p = print
    o = r.options
    p(
        f"Burst: {o.burst} new connections at once, one GET /apps/Projects/ each"
        f" (Connection: close; Basic credentials), {_rounds(o.rounds)}, {o.burst_deadline:.0f} s"
        " deadline each; latency from connect() to the response's last byte"
    )
    p(
        f"  {'':<22} {'backlog':>7} {'p50 ms':>9} {'p99 ms':>9} {'max ms':>9} {'answered':>9}"
        f"  failed (connect/read/timeout/status)  ListenOverflows ListenDrops"
    )
    for key, x in r.burst.items():
        label, server = BURST_LABELS[key]
        backlog = r.backlogs.get(server)
        e = x.errors
        failed = f"{x.failed} ({e['connect']}/{e['read']}/{e['timeout']}/{e['status']})"
        p(
            f"  {label:<22} {'?' if backlog is None else backlog:>7} {_ms(x.p50_ms)}"
            f" {_ms(x.p99_ms)} {_ms(x.max_answered_ms)} {len(x.latencies_ms):>9}"
            f"  {failed:<36} {x.listen.get('ListenOverflows', '?'):>15}"
            f" {x.listen.get('ListenDrops', '?'):>11}"
        )
    for key, x in r.burst.items():
        rounds = " / ".join("failed" if math.isinf(v) else f"{v:,.0f} ms" for v in x.rounds_p99_ms)
        p(
            f"  {BURST_LABELS[key][0]}: p99 per round {rounds}; client CPU"
            f" {x.client_cpu_s:.2f} s in {x.wall_s:.2f} s"
        )
    fe, hap = r.burst.get("full"), r.burst.get("haproxy")
    if fe is not None and hap is not None and math.isfinite(fe.p99_ms):
        p(f"  feproxy p99 / HAProxy p99: {ratio(fe.p99_ms, hap.p99_ms):.2f}x")
    p(
        "  (p50, p99: median of the rounds'; a failed connection counts as slower than any"
        " answered one; backlog: the listener's, from ss; drop counters: whole machine)"
    )
    _cpu_table(r.cpu.get("burst", {}), BURST_LABELS, unit="connection")
    p("")


def _ops(c: OpCount) -> str:
    kinds = ", ".join(f"{v} {k}" for k, v in sorted(c.by_kind.items())) or "none"
    schema = f"; {c.schema_reads} of the SRCH read the schema" if c.schema_reads else ""
    return f"{c.per_request_ops} ({kinds}{schema})"


def _ldap(r: Results) -> None:
    p = print
    if r.warm_ops is None:
        return
    p("LDAP operations (counted in slapd's -d stats log; the number is BIND+SRCH+CMP)")
    p(f"  warm, during {r.warm_requests} feproxy requests: {_ops(r.warm_ops)}")
    if r.warm_metric is not None:
        p(f"    feproxy's feproxy_ldap_queries_total rose by {r.warm_metric:.0f}")
    if r.warm_ops.background:
        p(f"    (+{r.warm_ops.background} directory-watcher poll searches, timer-driven)")
    for key, x in r.new_user.items():
        p(
            f"  new user, {key} {x['path']} (status {x['status'][0]}):"
            f" first request {_ops(x['first'])}; second {_ops(x['second'])}"
        )
        if x["metric"][0] is not None:
            p(
                f"    feproxy_ldap_queries_total: +{x['metric'][0]:.0f} for the first,"
                f" +{x['metric'][1]:.0f} for the second"
            )
    p("")


def _workers(r: Results) -> None:
    p = print
    if not r.workers:
        return
    p("Workers (feproxy serve --workers N)")
    if "skipped" in r.workers:
        p(f"  SKIPPED: {r.workers['skipped']}")
    else:
        w1, w2 = r.workers["1"], r.workers["2"]
        p(f"  front end on cores {r.workers['front_end_cpus']}; 1 KiB full path, 1 user")
        p(_columns("req/s"))
        p(_row("--workers 1", w1, f"{w1.rps:,.0f}"))
        p(_row("--workers 2", w2, f"{w2.rps:,.0f}"))
        p(f"  scaling 1 -> 2 workers: {ratio(w2.rps, w1.rps):.2f}x")
    p("")


def _profile(r: Results) -> None:
    p = print
    if not r.profile:
        return
    p("Profile of feproxy under load (py-spy)")
    if "skipped" in r.profile:
        p(f"  SKIPPED: {r.profile['skipped']}")
    else:
        p(f"  {r.profile['samples']} samples; raw stacks in {r.profile['raw']}")
        p("  top functions by self time (on CPU in the function itself):")
        for h in r.profile["self"]:
            p(f"    {h.self_share:6.1%}  {h.function}  {h.location}")
        p("  top feproxy functions by inclusive time (in it or what it calls):")
        for h in r.profile["total"]:
            p(f"    {h.total_share:6.1%}  {h.function}  {h.location}")
    p("")


def summary(r: Results) -> bool:
    """Print the report; whether any target was missed."""
    p = print
    p("")
    if r.small:
        _small(r)
    if r.big:
        _big(r)
    if r.burst:
        _burst(r)
    _ldap(r)
    _workers(r)
    _profile(r)
    if r.unreachable:
        p(
            f"Note: feproxy logged {r.unreachable} failed back-end connections during the run;"
            " each marks a replica unavailable (unavailable_for) and moves its users"
        )
        p("")
    found = targets(r)
    quick = "  [--quick: numbers too small to mean anything]" if r.options.quick else ""
    p("Targets (issue 11)" + quick)
    for t in found:
        p(f"  {'PASS' if t.met else 'FAIL'}  {t.name}: {t.measured}")
    for t in checks(r):
        p(f"  {'INFO' if t.met else 'WARN'}  {t.name}: {t.measured}")
    sys.stdout.flush()
    return not all(t.met for t in found)
