"""The targets of issue 11 against a run's numbers, the checks beside them, and the JSON form.

Targets (PASS/FAIL): feproxy's full path at least 4.0x
``ReverseProxyResource`` and 0.25x HAProxy in requests per second for 1 KiB
responses (with one user and with many), at least 0.9x HAProxy in GB/s for
1 MiB responses with flat RSS (growth under 50 MiB), p99 at most 3x p50
for 1 KiB responses, and in a burst of new connections a p99 at most 3x
HAProxy's.  Checks (INFO, or WARN when they do not hold): no LDAP operation
during warm requests, and the burst client keeping up (HAProxy's burst p99
within about a second).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, is_dataclass
from typing import Any

from bench.bursts import BurstResult
from bench.directory import OpCount
from bench.load import LoadResult
from bench.options import Results

__all__ = [
    "BIG_GBPS_VS_HAPROXY",
    "BIG_RSS_GROWTH_MIB",
    "BURST_CLIENT_P99_MS",
    "BURST_P99_VS_HAPROXY",
    "GB",
    "P99_VS_P50",
    "SMALL_RPS_VS_PEERS",
    "Target",
    "checks",
    "gbps",
    "ratio",
    "targets",
    "to_json",
]

GB = 1e9  # throughput in decimal gigabytes per second
MIB = 1024 * 1024
#: HAProxy's burst p99 above this says the client (or the machine), not the servers, is slow.
BURST_CLIENT_P99_MS = 1500.0
FULL_RUNS = (("full_one_user", "1 user"), ("full_many_users", "many users"))

# The targets of issue 11, as ratios to a peer or limits.
#: feproxy's full path against each peer, 1 KiB requests per second.
SMALL_RPS_VS_PEERS = (("reverse_proxy", "ReverseProxyResource", 4.0), ("haproxy", "HAProxy", 0.25))
#: feproxy's 1 MiB GB/s against HAProxy's.
BIG_GBPS_VS_HAPROXY = 0.9
#: feproxy's RSS growth over the 1 MiB runs.
BIG_RSS_GROWTH_MIB = 50
#: feproxy's 1 KiB p99 against its own p50.
P99_VS_P50 = 3.0
#: feproxy's burst p99 against HAProxy's.
BURST_P99_VS_HAPROXY = 3.0


@dataclass(frozen=True)
class Target:
    """One target (or check) and whether this run met it."""

    name: str
    measured: str
    met: bool


def ratio(a: float, b: float) -> float:
    return a / b if b > 0 else 0.0


def gbps(x: LoadResult) -> float:
    """Body throughput of 1 MiB responses, in GB/s."""
    return x.requests * MIB / x.seconds / GB if x.seconds > 0 else 0.0


def _ms(value: float) -> str:
    return f"{value:,.0f} ms" if math.isfinite(value) else "failed"


def _failed(x: BurstResult) -> str:
    return f"{x.failed} of {x.connections} connections failed"


def targets(r: Results) -> list[Target]:
    """The targets of issue 11 that this run's numbers can judge."""
    out: list[Target] = []
    users = r.options.users
    for peer, label, wanted in SMALL_RPS_VS_PEERS:
        for key, who in FULL_RUNS:
            full, other = r.small.get(key), r.small.get(peer)
            if full is not None and other is not None:
                x = ratio(full.rps, other.rps)
                shown = who.replace("many", str(users))
                name = f"1 KiB, full path ({shown}) >= {wanted}x {label} req/s"
                out.append(Target(name, f"{x:.2f}x", x >= wanted))
    big, haproxy = r.big.get("full"), r.big.get("haproxy")
    if big is not None and haproxy is not None:
        x = ratio(gbps(big), gbps(haproxy))
        measured = f"{x:.2f}x ({gbps(big):.2f} against {gbps(haproxy):.2f} GB/s)"
        name = f"1 MiB >= {BIG_GBPS_VS_HAPROXY}x HAProxy GB/s"
        out.append(Target(name, measured, x >= BIG_GBPS_VS_HAPROXY))
    if big is not None and r.memory:
        growth = r.memory["growth_mib"]
        name = f"1 MiB: feproxy RSS growth < {BIG_RSS_GROWTH_MIB} MiB"
        out.append(Target(name, f"{growth:.1f} MiB", growth < BIG_RSS_GROWTH_MIB))
    for key, who in FULL_RUNS:
        full = r.small.get(key)
        if full is not None:
            x = ratio(full.p99_ms, full.p50_ms)
            shown = who.replace("many", str(users))
            name = f"1 KiB, full path ({shown}): p99 <= {P99_VS_P50:g}x p50"
            measured = f"{x:.2f}x ({full.p99_ms:.2f} / {full.p50_ms:.2f} ms)"
            out.append(Target(name, measured, full.p50_ms > 0 and x <= P99_VS_P50))
    fe, hap = r.burst.get("full"), r.burst.get("haproxy")
    if fe is not None and hap is not None:
        name = (
            f"burst of {r.options.burst} new connections:"
            f" feproxy p99 <= {BURST_P99_VS_HAPROXY:g}x HAProxy's"
        )
        if math.isfinite(fe.p99_ms) and math.isfinite(hap.p99_ms):
            x = ratio(fe.p99_ms, hap.p99_ms)
            measured = f"{x:.2f}x ({_ms(fe.p99_ms)} against {_ms(hap.p99_ms)})"
            out.append(Target(name, measured, x <= BURST_P99_VS_HAPROXY))
        else:
            measured = (
                f"feproxy {_failed(fe)}, HAProxy {_failed(hap)}"
                f" (p99 {_ms(fe.p99_ms)} against {_ms(hap.p99_ms)})"
            )
            out.append(Target(name, measured, met=False))
    return out


def checks(r: Results) -> list[Target]:
    """What must hold for the run to mean what it says (shown as INFO, or WARN)."""
    out: list[Target] = []
    if r.warm_ops is not None:
        ops = r.warm_ops.per_request_ops
        per = ratio(ops, r.warm_requests)
        out.append(
            Target(
                "0 LDAP operations per warm request",
                f"{ops} in {r.warm_requests} requests ({per:.4f}/request)",
                ops == 0 and r.warm_requests > 0,
            )
        )
    hap = r.burst.get("haproxy")
    if hap is not None:
        measured = (
            f"HAProxy's p99 {_ms(hap.p99_ms)}; the client used {hap.client_cpu_s:.2f} s of CPU"
            f" in {hap.wall_s:.2f} s"
        )
        out.append(
            Target(
                f"burst client keeps up (HAProxy's p99 <= {BURST_CLIENT_P99_MS / 1000:.1f} s)",
                measured,
                hap.p99_ms <= BURST_CLIENT_P99_MS,
            )
        )
    return out


def _json(value: object) -> object:
    if isinstance(value, LoadResult | BurstResult):
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
    if is_dataclass(value) and not isinstance(value, type):
        return _json(asdict(value))
    return value


def to_json(r: Results) -> dict[str, Any]:
    """The results as JSON-ready data, with the targets."""
    o = r.options
    return {
        "options": {
            "duration": o.duration,
            "warmup": o.warmup,
            "rounds": o.rounds,
            "connections": o.connections,
            "users": o.users,
            "burst": o.burst,
            "quick": o.quick,
        },
        "tool": r.tool,
        "pinning": r.pinning,
        "versions": r.versions,
        "kernel": r.kernel,
        "nofile": r.nofile,
        "small": _json(r.small),
        "big": {k: {**v.to_json(), "gbps": round(gbps(v), 4)} for k, v in r.big.items()},
        "memory": r.memory,
        "burst": _json(r.burst),
        "listen_backlogs": r.backlogs,
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
        "checks": [asdict(t) for t in checks(r)],
    }
