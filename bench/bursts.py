"""The burst group: many new connections at once, one request each.

For each proxy in turn (HAProxy, nginx, feproxy; interleaved over the
rounds), bench/burst.py opens ``--burst`` connections at once from the load
generator's core, each sending one ``GET`` of the 1 KiB path with
``Connection: close`` (and Basic credentials, cycling through the warm
users).  Around each burst the harness reads the kernel's listen-queue drop
counters (bench/kernel.py) and the servers' CPU time.  A connection that
failed or passed its deadline counts, in the percentiles, as slower than
any answered one: a round's p99 is then "failed" when more than 1% failed.
A proxy's p50 and p99 are the median of its rounds' (as for the keep-alive
runs), so that one round disturbed by other work on the machine does not
decide; the slowest answered connection is over all rounds.
"""

from __future__ import annotations

import json
import math
import statistics
import sys
import time
from dataclasses import dataclass, field, replace

from bench import kernel
from bench.burst import MARK
from bench.rig import SMALL_PATH, Rig, add_cpu, note

__all__ = [
    "BURST_LABELS",
    "BurstResult",
    "as_round",
    "merge_bursts",
    "parse_burst",
    "percentile",
    "run",
]

#: Each proxy a burst is aimed at, in the order run: key -> (label, server).
BURST_LABELS = {
    "haproxy": ("HAProxy", "haproxy"),
    "nginx": ("nginx", "nginx"),
    "full": ("feproxy, full path", "feproxy"),
}
#: Seconds between two bursts, for the last one's connections to be closed.
PAUSE = 0.5


def percentile(ordered: list[float], q: float) -> float:
    """The ``q``-th percentile (nearest rank) of sorted values; 0.0 when empty."""
    if not ordered:
        return 0.0
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


@dataclass(frozen=True)
class BurstResult:
    """What one proxy's bursts found (all rounds together)."""

    connections: int
    latencies_ms: list[float]  # answered connections, sorted
    errors: dict[str, int]
    wall_s: float
    client_cpu_s: float
    listen: dict[str, int] = field(default_factory=dict)  # listen-queue counters' deltas
    rounds_p50_ms: tuple[float, ...] = ()  # each round's (see as_round)
    rounds_p99_ms: tuple[float, ...] = ()

    @property
    def failed(self) -> int:
        return sum(self.errors.values())

    def pooled(self, q: float) -> float:
        """Percentile over every connection, a failed one counting as infinitely slow."""
        everything = self.latencies_ms + [math.inf] * self.failed
        return percentile(everything, q)

    @property
    def p50_ms(self) -> float:
        """The median of the rounds' p50 (of all connections without rounds)."""
        return statistics.median(self.rounds_p50_ms) if self.rounds_p50_ms else self.pooled(50)

    @property
    def p99_ms(self) -> float:
        """The median of the rounds' p99 (of all connections without rounds)."""
        return statistics.median(self.rounds_p99_ms) if self.rounds_p99_ms else self.pooled(99)

    @property
    def max_answered_ms(self) -> float:
        return self.latencies_ms[-1] if self.latencies_ms else 0.0

    def to_json(self) -> dict[str, object]:
        def finite(value: float) -> float | None:
            return round(value, 3) if math.isfinite(value) else None

        return {
            "connections": self.connections,
            "answered": len(self.latencies_ms),
            "errors": self.errors,
            "p50_ms": finite(self.p50_ms),
            "p99_ms": finite(self.p99_ms),
            "max_answered_ms": finite(self.max_answered_ms),
            "listen": self.listen,
            "wall_s": round(self.wall_s, 3),
            "client_cpu_s": round(self.client_cpu_s, 3),
            "rounds_p50_ms": [finite(x) for x in self.rounds_p50_ms],
            "rounds_p99_ms": [finite(x) for x in self.rounds_p99_ms],
        }


def parse_burst(output: str, listen: dict[str, int] | None = None) -> BurstResult:
    """One burst's result from bench/burst.py's output (its ``BURSTJSON`` line)."""
    for line in output.splitlines():
        if line.startswith(MARK):
            data = json.loads(line[len(MARK) :])
            break
    else:
        raise RuntimeError(f"bench/burst.py printed no summary:\n{output.strip()}")
    return as_round(
        BurstResult(
            connections=int(data["connections"]),
            latencies_ms=sorted(float(x) for x in data["latencies_ms"]),
            errors={k: int(v) for k, v in data["errors"].items()},
            wall_s=float(data["wall_s"]),
            client_cpu_s=float(data["client_cpu_s"]),
            listen=dict(listen or {}),
        )
    )


def as_round(result: BurstResult) -> BurstResult:
    """``result`` (one burst) with its percentiles noted as one round's."""
    return replace(result, rounds_p50_ms=(result.pooled(50),), rounds_p99_ms=(result.pooled(99),))


def merge_bursts(rounds: list[BurstResult]) -> BurstResult:
    """Several bursts of one proxy as one: counts added, latencies pooled (for the
    slowest), each round's percentiles kept (the result's are their median)."""
    errors: dict[str, int] = {}
    listen: dict[str, int] = {}
    for r in rounds:
        for k, v in r.errors.items():
            errors[k] = errors.get(k, 0) + v
        for k, v in r.listen.items():
            listen[k] = listen.get(k, 0) + v
    return BurstResult(
        connections=sum(r.connections for r in rounds),
        latencies_ms=sorted(x for r in rounds for x in r.latencies_ms),
        errors=errors,
        wall_s=sum(r.wall_s for r in rounds),
        client_cpu_s=sum(r.client_cpu_s for r in rounds),
        listen=listen,
        rounds_p50_ms=tuple(p for r in rounds for p in r.rounds_p50_ms),
        rounds_p99_ms=tuple(p for r in rounds for p in r.rounds_p99_ms),
    )


def _delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {k: after[k] - before[k] for k in after if k in before}


def run(rig: Rig) -> None:
    """The bursts against HAProxy, nginx and feproxy, ``rounds`` times interleaved."""
    o, results = rig.o, rig.results
    if o.burst <= 0:
        return
    targets = [(key, label, server) for key, (label, server) in BURST_LABELS.items()]
    for _, _, server in targets:
        results.backlogs[server] = kernel.listen_backlog(rig.ports[server])
    auths = [u.authorization for u in rig.cycling]
    auth_file = rig.workdir / "burst-auths.json"
    auth_file.write_text(json.dumps(auths), encoding="utf-8")
    rounds = max(1, o.rounds)
    kept: dict[str, list[BurstResult]] = {key: [] for key, _, _ in targets}
    cpu: dict[str, dict[str, float]] = {key: {} for key, _, _ in targets}
    for _ in range(rounds):
        for key, _, server in targets:
            argv = [sys.executable, "-m", "bench.burst", "--url", rig.url(server, SMALL_PATH)]
            argv += ["--connections", str(o.burst), "--authorizations", str(auth_file)]
            argv += ["--deadline", str(o.burst_deadline)]
            time.sleep(PAUSE)
            counters, used = kernel.listen_counters(), rig.cpu()
            output = rig.children.run(argv, cpus=rig.load_cpus, timeout=o.burst_deadline + 60)
            add_cpu(cpu[key], used, rig.cpu())
            kept[key].append(parse_burst(output, _delta(counters, kernel.listen_counters())))
            rig.check_alive()
    for key, label, _ in targets:
        merged = merge_bursts(kept[key])
        results.burst[key] = merged
        results.cpu.setdefault("burst", {})[key] = {
            name: used * 1e6 / merged.connections for name, used in cpu[key].items()
        }
        p99 = "failed" if math.isinf(merged.p99_ms) else f"{merged.p99_ms:.0f} ms"
        note(f"  ran burst {label}: p99 {p99}, {merged.failed} failed")
