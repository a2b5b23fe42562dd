"""Printing the benchmark's results, its targets, and the JSON form."""

from __future__ import annotations

import sys
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from bench.directory import OpCount
from bench.load import LoadResult

if TYPE_CHECKING:
    from bench.options import Results

__all__ = ["Target", "header", "info", "progress", "summary", "targets", "to_json"]

GB = 1e9  # throughput in decimal gigabytes per second
MIB = 1024 * 1024
SMALL_LABELS = {
    "direct": "direct to back end",
    "reverse_proxy": "ReverseProxyResource",
    "full_one_user": "feproxy, 1 user",
    "full_many_users": "feproxy, many users",
}
MINIMAL_TITLE = (
    "GET /apps/Projects/ against a minimal back end (bench/backend.py: replays the farm's answer)"
)
FARM_TITLE = "GET /apps/Projects/ against the stub farm (twisted.web)"
#: The CPU table's columns: (heading, child process) for each group of runs.
FARM_CPU = (("feproxy", "feproxy"), ("reverse_proxy", "reverse_proxy"), ("farm", "farm"))
CPU_COLUMNS = {
    "small": (*FARM_CPU, ("slapd", "slapd")),
    "small_minimal": (
        ("feproxy", "feproxy_min"),
        ("reverse_proxy", "reverse_proxy_min"),
        ("bench backend", "bench_backend"),
        ("slapd", "slapd"),
    ),
    "big": (*FARM_CPU, ("slapd", "slapd")),
}


@dataclass(frozen=True)
class Target:
    """One target of issue 6 and whether this run met it."""

    name: str
    measured: str
    met: bool


def _ratio(a: float, b: float) -> float:
    return a / b if b > 0 else 0.0


def header(r: Results) -> None:
    o = r.options
    print(
        f"feproxy benchmark: {r.tool}, {o.duration} s per run after {o.warmup} s warm-up, "
        f"{o.connections} connections, {r.pinning}",
        flush=True,
    )


def progress(name: str, result: LoadResult) -> None:
    """One line as each run ends (on stderr, so stdout stays the report)."""
    print(
        f"  ran {name}: {result.rps:,.0f} req/s, p99 {result.p99_ms:.2f} ms",
        file=sys.stderr,
        flush=True,
    )


def _row(label: str, x: LoadResult, first: str) -> str:
    errors = ", ".join(f"{k} {v}" for k, v in x.errors.items() if v) or "0"
    return (
        f"  {label:<30} {first:>10} {x.p50_ms:>8.2f} {x.p90_ms:>8.2f} {x.p99_ms:>8.2f}"
        f" {x.requests:>9}  {errors}"
    )


def _spread(x: LoadResult) -> str:
    if len(x.rounds_rps) < 2:
        return ""
    return "  (rounds " + " / ".join(f"{v:,.0f}" for v in x.rounds_rps) + ")"


def _columns(first: str) -> str:
    names = f"{'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} {'requests':>9}"
    return f"  {'':<30} {first:>10} {names}  errors"


def _cpu_table(
    cpu: dict[str, dict[str, float]], labels: dict[str, str], columns: tuple[tuple[str, str], ...]
) -> None:
    """CPU time per request of each server process, from /proc (all threads).

    ``columns``: (heading, child name); "others" is every other (idle) server.
    """
    print("  CPU per request, microseconds (user+system, from /proc):")
    headings = [h for h, _ in columns] + ["others"]
    print(f"  {'':<30} " + " ".join(f"{h:>13}" for h in headings) + f" {'all servers':>12}")
    for key, label in labels.items():
        if key not in cpu:
            continue
        used = cpu[key]
        shown = [used.get(name) for _, name in columns]
        # A difference of sums can come out a hair below zero: never print "-0".
        others = max(0.0, sum(used.values()) - sum(v for v in shown if v is not None))
        cells = " ".join(f"{'-':>13}" if v is None else f"{v:>13.0f}" for v in [*shown, others])
        print(f"  {label:<30} {cells} {sum(used.values()):>12.0f}")


def gbps(x: LoadResult) -> float:
    """Body throughput of 1 MiB responses, in GB/s."""
    return x.requests * MIB / x.seconds / GB if x.seconds > 0 else 0.0


def _rp_ratios(small: dict[str, LoadResult], suffix: str) -> list[Target]:
    """Full path >= 2.0x ReverseProxyResource, with one user and with many."""
    out: list[Target] = []
    rp = small.get("reverse_proxy")
    for key, who in (("full_one_user", "1 user"), ("full_many_users", "many users")):
        full = small.get(key)
        if full is not None and rp is not None:
            ratio = _ratio(full.rps, rp.rps)
            name = f"full path ({who}) >= 2.0x ReverseProxyResource req/s{suffix}"
            out.append(Target(name, f"{ratio:.2f}x", ratio >= 2.0))
    return out


def info(r: Results) -> list[Target]:
    """The same ratios against the stub farm: shown, not targets (the farm shares the core)."""
    return _rp_ratios(r.small, ", against the stub farm")


def targets(r: Results) -> list[Target]:
    """The targets of issue 6 against this run's numbers (req/s: the minimal back end)."""
    out = _rp_ratios(r.small_minimal, ", against the minimal back end")
    big = r.big.get("full")
    if big is not None:
        rate = gbps(big)
        out.append(Target("1 MiB responses >= 0.5 GB/s", f"{rate:.3f} GB/s", rate >= 0.5))
        growth = r.memory["growth_mib"]
        out.append(Target("RSS growth < 50 MiB during 1 MiB run", f"{growth:.1f} MiB", growth < 50))
    if r.warm_ops is not None:
        ops = r.warm_ops.per_request_ops
        per = _ratio(ops, r.warm_requests)
        out.append(
            Target(
                "0 LDAP operations per warm request",
                f"{ops} in {r.warm_requests} requests ({per:.4f}/request)",
                ops == 0 and r.warm_requests > 0,
            )
        )
    return out


def _ops(c: OpCount) -> str:
    kinds = ", ".join(f"{v} {k}" for k, v in sorted(c.by_kind.items())) or "none"
    schema = f"; {c.schema_reads} of the SRCH read the schema" if c.schema_reads else ""
    return f"{c.per_request_ops} ({kinds}{schema})"


def summary(r: Results) -> bool:
    """Print the report; whether any target was missed."""
    p = print
    o = r.options
    p("")
    for title, small, group in (
        (MINIMAL_TITLE, r.small_minimal, "small_minimal"),
        (FARM_TITLE, r.small, "small"),
    ):
        if small:
            _small_table(
                f"{title}; back end {r.backend}", small, r.cpu.get(group, {}), group, o.users
            )
    if r.big:
        p("GET /exchweb/bytes/1048576 (1 MiB responses, static vdir)")
        p(_columns("GB/s"))
        for key, label in (("direct", "direct to back end"), ("full", "feproxy")):
            if key in r.big:
                p(_row(label, r.big[key], f"{gbps(r.big[key]):.3f}"))
        m = r.memory
        p(
            f"  feproxy RSS: {m['rss_before_mib']:.1f} MiB before, peak {m['peak_rss_mib']:.1f}"
            f" MiB (VmHWM {m['vmhwm_mib']:.1f}), {m['rss_after_mib']:.1f} MiB after;"
            f" growth {m['growth_mib']:.1f} MiB"
        )
        labels = {"direct": "direct to back end", "full": "feproxy"}
        _cpu_table(r.cpu.get("big", {}), labels, CPU_COLUMNS["big"])
        p("")
    if r.warm_ops is not None:
        p("LDAP operations (counted in slapd's -d stats log; the number is BIND+SRCH+CMP)")
        p(f"  warm, during {r.warm_requests} feproxy requests: {_ops(r.warm_ops)}")
        if r.warm_metric is not None:
            p(f"    the front ends' feproxy_ldap_queries_total (both) rose by {r.warm_metric:.0f}")
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
    if r.workers:
        p("Workers (feproxy serve --workers N)")
        if "skipped" in r.workers:
            p(f"  SKIPPED: {r.workers['skipped']}")
        else:
            w1, w2 = r.workers["1"], r.workers["2"]
            p(
                f"  front end on cores {r.workers['front_end_cpus']};"
                " GET /apps/Projects/, 1 user, minimal back end"
            )
            p(_columns("req/s"))
            p(_row("--workers 1", w1, f"{w1.rps:,.0f}"))
            p(_row("--workers 2", w2, f"{w2.rps:,.0f}"))
            p(f"  scaling 1 -> 2 workers: {_ratio(w2.rps, w1.rps):.2f}x")
        p("")
    if r.profile:
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
    if r.unreachable:
        p(
            f"Note: feproxy logged {r.unreachable} failed back-end connections during the run;"
            " each marks a replica unavailable (unavailable_for) and moves its users"
        )
        p("")
    checks = targets(r)
    p("Targets (issue 6)" + ("  [--quick: numbers too small to mean anything]" if o.quick else ""))
    for t in checks:
        p(f"  {'PASS' if t.met else 'FAIL'}  {t.name}: {t.measured}")
    for t in info(r):
        p(f"  INFO  {t.name}: {t.measured}")
    sys.stdout.flush()
    return not all(t.met for t in checks)


def _small_table(
    title: str,
    small: dict[str, LoadResult],
    cpu: dict[str, dict[str, float]],
    group: str,
    users: int,
) -> None:
    """One group of small-response runs: rates and latencies, ratios, CPU per request."""
    p = print
    p(title)
    p(_columns("req/s"))
    labels = {k: v.replace("many", str(users)) for k, v in SMALL_LABELS.items()}
    for key, x in small.items():
        p(_row(labels[key], x, f"{x.rps:,.0f}") + _spread(x))
    rp, direct = small.get("reverse_proxy"), small.get("direct")
    for key, who in (("full_one_user", "1 user"), ("full_many_users", f"{users} users")):
        full = small.get(key)
        if full is not None and rp is not None:
            line = f"  ratio ({who}): full/ReverseProxyResource {_ratio(full.rps, rp.rps):.2f}x"
            if direct is not None:
                line += f", full/direct {_ratio(full.rps, direct.rps):.2f}x"
            p(line)
    _cpu_table(cpu, labels, CPU_COLUMNS[group])
    p("")


def _json(value: Any) -> Any:
    if isinstance(value, LoadResult):
        return value.to_json()
    if isinstance(value, OpCount):
        return {
            "per_request_ops": value.per_request_ops,
            "by_kind": value.by_kind,
            "schema_reads": value.schema_reads,
            "background": value.background,
        }
    if isinstance(value, dict):
        return {k: _json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json(v) for v in value]
    if hasattr(value, "__dataclass_fields__"):
        return _json(asdict(value))
    return value


def to_json(r: Results) -> dict[str, Any]:
    """The results as JSON-ready data, with the targets."""
    o = r.options
    return {
        "options": {
            "duration": o.duration,
            "warmup": o.warmup,
            "connections": o.connections,
            "users": o.users,
            "quick": o.quick,
        },
        "tool": r.tool,
        "pinning": r.pinning,
        "backend": r.backend,
        "small": _json(r.small),
        "small_minimal": _json(r.small_minimal),
        "big": {k: {**v.to_json(), "gbps": round(gbps(v), 4)} for k, v in r.big.items()},
        "memory": r.memory,
        "cpu_us_per_request": r.cpu,
        "ldap": {
            "warm": _json(r.warm_ops),
            "warm_requests": r.warm_requests,
            "warm_metric_ldap_queries": r.warm_metric,
            "new_user": _json(r.new_user),
        },
        "workers": _json(r.workers),
        "backend_connect_failures": r.unreachable,
        "profile": {k: _json(v) for k, v in r.profile.items()},
        "targets": [asdict(t) for t in targets(r)],
        "info": [asdict(t) for t in info(r)],
    }
