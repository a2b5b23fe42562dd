"""What one benchmark run does (its options) and what it found (its results)."""

from __future__ import annotations

import argparse
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.directory import OpCount
from bench.load import LoadResult

if TYPE_CHECKING:
    from bench.bursts import BurstResult

__all__ = ["Options", "Results", "Run", "parse_options"]


@dataclass(frozen=True)
class Options:
    """What to run: durations in seconds."""

    duration: int = 10
    warmup: int = 2
    rounds: int = 3
    connections: int = 32
    users: int = 100
    workers: bool = True
    profile: bool = False
    loadgen: str = "auto"
    pin: bool = True
    keep: bool = False
    json_path: Path | None = None
    overrides: tuple[tuple[str, Any], ...] = ()
    quick: bool = False
    strict: bool = False
    burst: int = 3000
    burst_deadline: float = 30.0


@dataclass
class Results:
    """Everything measured, as :mod:`bench.report` prints it."""

    options: Options
    tool: str = ""
    pinning: str = ""
    versions: dict[str, str] = field(default_factory=dict)  # haproxy, nginx
    kernel: dict[str, str] = field(default_factory=dict)  # net.core.somaxconn, ...
    nofile: int = 0  # RLIMIT_NOFILE of the servers and clients
    small: dict[str, LoadResult] = field(default_factory=dict)  # 1 KiB responses
    big: dict[str, LoadResult] = field(default_factory=dict)  # 1 MiB responses
    burst: dict[str, BurstResult] = field(default_factory=dict)
    backlogs: dict[str, int | None] = field(default_factory=dict)  # each listener's, from ss
    memory: dict[str, float] = field(default_factory=dict)
    warm_ops: OpCount | None = None
    warm_requests: int = 0
    warm_metric: float | None = None
    new_user: dict[str, Any] = field(default_factory=dict)
    workers: dict[str, Any] = field(default_factory=dict)
    cpu: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)
    profile: dict[str, Any] = field(default_factory=dict)
    unreachable: int = 0


@dataclass(frozen=True)
class Run:
    """One configuration to load: GET ``url``, cycling through ``auths``."""

    key: str
    label: str
    url: str
    auths: list[str]


def parse_options(argv: Sequence[str] | None, doc: str | None = None) -> Options:
    """The options of ``bench/run``'s command line."""
    summary = (doc or __doc__ or "").split("\n\n")[0]
    p = argparse.ArgumentParser(prog="bench/run", description=summary)
    p.add_argument(
        "--duration",
        type=int,
        default=None,
        metavar="SECONDS",
        help="measured per configuration (10)",
    )
    p.add_argument(
        "--warmup", type=int, default=None, metavar="SECONDS", help="warm-up per configuration (2)"
    )
    p.add_argument("--connections", type=int, default=None, metavar="N", help="(32)")
    p.add_argument(
        "--rounds", type=int, default=None, metavar="N", help="interleaved rounds per run (3)"
    )
    p.add_argument("--users", type=int, default=None, metavar="N", help="cycled users (100)")
    p.add_argument(
        "--quick",
        action="store_true",
        help="tiny run: 1 s, 2 connections, 5 users, a burst of 50; the proxies "
        "that the targets compare only",
    )
    p.add_argument(
        "--burst",
        type=int,
        default=None,
        metavar="N",
        help="new connections at once in the burst runs (3000; 0 skips them)",
    )
    p.add_argument("--json", type=Path, metavar="FILE", help="also write the results as JSON")
    p.add_argument("--profile", action="store_true", help="py-spy the front end under load")
    p.add_argument("--no-workers", action="store_true", help="skip the --workers 1 vs 2 runs")
    p.add_argument("--no-pin", action="store_true", help="do not pin processes to cores")
    p.add_argument("--loadgen", choices=["auto", "wrk", "python"], default="auto")
    p.add_argument("--keep", action="store_true", help="keep the work directory (logs)")
    p.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a key of the front end's configuration (from conf/feproxy.toml), "
        "VALUE in TOML: --set frontend.max_idle_per_backend=64",
    )
    a = p.parse_args(argv)
    quick = a.quick
    overrides = []
    for item in a.set:
        key, sep, text = item.partition("=")
        try:
            value = tomllib.loads(f"v = {text}")["v"] if sep else None
        except tomllib.TOMLDecodeError:
            value = None
        if not key or value is None:
            p.error(f"--set {item}: expected KEY=VALUE with a TOML value")
        overrides.append((key.strip(), value))
    options = Options(
        duration=a.duration or (1 if quick else 10),
        warmup=a.warmup if a.warmup is not None else (0 if quick else 2),
        rounds=a.rounds or (1 if quick else 3),
        connections=a.connections or (2 if quick else 32),
        users=a.users or (5 if quick else 100),
        workers=not (a.no_workers or quick),
        profile=a.profile,
        loadgen=a.loadgen,
        pin=not a.no_pin,
        keep=a.keep,
        json_path=a.json,
        overrides=tuple(overrides),
        quick=quick,
        strict=a.strict,
        burst=a.burst if a.burst is not None else (50 if quick else 3000),
    )
    if options.burst < 0:
        p.error("--burst must be 0 or more")
    if options.duration < 1 or options.connections < 1 or options.users < 1:
        p.error("--duration, --connections and --users must be at least 1")
    return options
