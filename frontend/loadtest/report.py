"""The load test's results as frozen values, and their JSON form.

A :class:`Report` holds one :class:`Run` per hash policy (offline with
``--policy both`` has two), each with the spread of users over the replicas
before (and after) a change, the movement the change caused, and for live
runs the traffic figures.  ``Report.to_json()`` has stable keys: a key that
does not apply is present with the value ``null``.

Everything is computed from counts, so the offline simulation and the live
run share the arithmetic: users per server, and for a change the pairs
``(server before, server after)`` of every user.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from frontend.loadtest.scenario import Change
from frontend.loadtest.stats import chi_square_evenness

__all__ = [
    "JSON_VERSION",
    "Distribution",
    "Movement",
    "Report",
    "RoundTiming",
    "Run",
    "ServerLoad",
    "Traffic",
]

#: A JSON object as ``json.loads`` gives it back: what ``--json`` prints.
#: Its values are whatever JSON holds, read by the tests as parsed JSON.
JSONObject = dict[str, Any]

#: Bumped when a key changes meaning or disappears (adding keys keeps it).
JSON_VERSION: Final = 1


def _sort_key(name: str) -> tuple[str, str]:
    return (name.lower(), name)


def _round(value: float, digits: int = 6) -> float:
    return round(value, digits)


@dataclass(frozen=True)
class ServerLoad:
    """One server's part: distinct users, requests (live only), share of users."""

    server: str
    users: int
    requests: int | None
    share: float
    vs_mean: float  # users / mean users per server
    expected: bool  # in the replica list (False: seen although not a replica)

    def to_json(self) -> JSONObject:
        return {
            "server": self.server,
            "users": self.users,
            "requests": self.requests,
            "share": _round(self.share),
            "vs_mean": _round(self.vs_mean),
            "expected": self.expected,
        }


@dataclass(frozen=True)
class Distribution:
    """How users spread over servers, with Pearson's chi-square test of evenness."""

    servers: tuple[ServerLoad, ...]
    users: int
    requests: int | None
    max_over_mean: float
    chi_square: float
    dof: int
    p_value: float

    @classmethod
    def from_counts(
        cls,
        users: Mapping[str, int],
        expected: Sequence[str],
        requests: Mapping[str, int] | None = None,
    ) -> Distribution:
        """The distribution of ``users`` (per server) over the ``expected``
        servers (counted even with no user); other servers in ``users`` are
        listed too, marked unexpected."""
        wanted = {name.lower() for name in expected}
        names = sorted(set(expected) | set(users), key=_sort_key)
        counts = [users.get(name, 0) for name in names]
        total = sum(counts)
        mean = total / len(names) if names else 0.0
        statistic, dof, p_value = chi_square_evenness(counts)
        rows = tuple(
            ServerLoad(
                server=name,
                users=count,
                requests=None if requests is None else requests.get(name, 0),
                share=count / total if total else 0.0,
                vs_mean=count / mean if mean else 0.0,
                expected=name.lower() in wanted,
            )
            for name, count in zip(names, counts, strict=True)
        )
        return cls(
            servers=rows,
            users=total,
            requests=None if requests is None else sum(requests.values()),
            max_over_mean=max(counts) / mean if mean else 0.0,
            chi_square=statistic,
            dof=dof,
            p_value=p_value,
        )

    def share_of(self, server: str) -> float:
        """The share of users on ``server`` (0.0 if it is not listed)."""
        for row in self.servers:
            if row.server.lower() == server.lower():
                return row.share
        return 0.0

    def to_json(self) -> JSONObject:
        return {
            "servers": [row.to_json() for row in self.servers],
            "users": self.users,
            "requests": self.requests,
            "max_over_mean": _round(self.max_over_mean),
            "chi_square": _round(self.chi_square),
            "dof": self.dof,
            "p_value": _round(self.p_value),
        }


@dataclass(frozen=True)
class Movement:
    """The users a change moved, against the ideal, and where they went.

    ``caused`` moves are those the change explains: to the added server, or
    away from the removed or failed one; any other move (between servers the
    change did not touch) is ``unnecessary``.  ``spread`` is the evenness of
    the caused moves: over the survivors they went to (remove, fail), or over
    the servers they came from (add).
    """

    change: str
    server: str
    description: str
    users: int
    moved: int
    moved_fraction: float
    ideal_fraction: float
    caused: int
    unnecessary: int
    moved_from: Mapping[str, int]
    moved_to: Mapping[str, int]
    spread_over: str  # "moved_to" or "moved_from"
    spread_chi_square: float
    spread_dof: int
    spread_p_value: float

    @classmethod
    def from_pairs(cls, change: Change, pairs: Mapping[tuple[str, str], int]) -> Movement:
        """The movement of users whose (server before, server after) are ``pairs``."""
        gone = change.server.lower()
        users = sum(pairs.values())
        moved_from: Counter[str] = Counter()
        moved_to: Counter[str] = Counter()
        caused = on_server = 0
        for (before, after), count in pairs.items():
            if before.lower() == gone:
                on_server += count
            if before.lower() == after.lower():
                continue
            moved_from[before] += count
            moved_to[after] += count
            if change.kind == "add":
                caused += count if after.lower() == gone else 0
            else:
                caused += count if before.lower() == gone else 0
        moved = sum(moved_to.values())
        if change.kind == "add":
            spread_over = "moved_from"
            spread_servers = change.before
            spread_counts = Counter(
                {b: n for (b, a), n in pairs.items() if a.lower() == gone and b.lower() != gone}
            )
        else:
            spread_over = "moved_to"
            spread_servers = change.survivors
            spread_counts = Counter(
                {a: n for (b, a), n in pairs.items() if b.lower() == gone and a.lower() != gone}
            )
        statistic, dof, p_value = chi_square_evenness(
            [spread_counts.get(name, 0) for name in spread_servers]
        )
        share = on_server / users if users else 0.0
        return cls(
            change=change.kind,
            server=change.server,
            description=change.description,
            users=users,
            moved=moved,
            moved_fraction=moved / users if users else 0.0,
            ideal_fraction=change.ideal_fraction(share),
            caused=caused,
            unnecessary=moved - caused,
            moved_from=_with_zeros(moved_from, change.before),
            moved_to=_with_zeros(moved_to, change.survivors),
            spread_over=spread_over,
            spread_chi_square=statistic,
            spread_dof=dof,
            spread_p_value=p_value,
        )

    def to_json(self) -> JSONObject:
        return {
            "change": self.change,
            "server": self.server,
            "description": self.description,
            "users": self.users,
            "moved": self.moved,
            "moved_fraction": _round(self.moved_fraction),
            "ideal_fraction": _round(self.ideal_fraction),
            "caused": self.caused,
            "unnecessary": self.unnecessary,
            "moved_from": dict(self.moved_from),
            "moved_to": dict(self.moved_to),
            "spread_over": self.spread_over,
            "spread_chi_square": _round(self.spread_chi_square),
            "spread_dof": self.spread_dof,
            "spread_p_value": _round(self.spread_p_value),
        }


def _with_zeros(counts: Mapping[str, int], servers: Sequence[str]) -> dict[str, int]:
    """``counts`` with every one of ``servers`` present, in name order."""
    names = sorted(set(servers) | set(counts), key=_sort_key)
    return {name: counts.get(name, 0) for name in names}


@dataclass(frozen=True)
class RoundTiming:
    """One round of the live run: every user's request, timed."""

    number: int  # 1-based
    requests: int
    seconds: float
    after_change: bool

    @property
    def requests_per_second(self) -> float:
        return self.requests / self.seconds if self.seconds > 0 else 0.0

    def to_json(self) -> JSONObject:
        return {
            "round": self.number,
            "requests": self.requests,
            "seconds": _round(self.seconds, 3),
            "requests_per_second": _round(self.requests_per_second, 1),
            "after_change": self.after_change,
        }


@dataclass(frozen=True)
class Traffic:
    """What the live run sent and got back."""

    requests: int
    succeeded: int  # 2xx answers
    failed: int  # everything else: other statuses, errors, timeouts
    statuses: Mapping[str, int]  # "200": n, ..., "error": n
    errors: Mapping[str, int]  # exception class name -> count
    elapsed_seconds: float
    requests_per_second: float
    latency_ms: Mapping[str, float]  # p50, p90, p99, max
    rounds: tuple[RoundTiming, ...]  # round 1 has cold caches: every user authenticates
    concurrency: int
    stickiness_violations_before: int
    stickiness_violations_after: int | None
    prediction_mismatches: int | None  # users routed unlike frontend.routing.hashing predicts

    def to_json(self) -> JSONObject:
        return {
            "requests": self.requests,
            "succeeded": self.succeeded,
            "failed": self.failed,
            "statuses": dict(self.statuses),
            "errors": dict(self.errors),
            "elapsed_seconds": _round(self.elapsed_seconds, 3),
            "requests_per_second": _round(self.requests_per_second, 1),
            "latency_ms": {
                k: _round(v, 3) if math.isfinite(v) else None for k, v in self.latency_ms.items()
            },
            "rounds": [r.to_json() for r in self.rounds],
            "concurrency": self.concurrency,
            "stickiness_violations": {
                "before": self.stickiness_violations_before,
                "after": self.stickiness_violations_after,
            },
            "prediction_mismatches": self.prediction_mismatches,
        }


@dataclass(frozen=True)
class Run:
    """One policy's results."""

    policy: str | None  # None: whatever the targeted front end is configured with
    before: Distribution
    after: Distribution | None = None
    movement: Movement | None = None
    traffic: Traffic | None = None
    elapsed_seconds: float = 0.0

    def to_json(self) -> JSONObject:
        return {
            "policy": self.policy,
            "before": self.before.to_json(),
            "after": None if self.after is None else self.after.to_json(),
            "movement": None if self.movement is None else self.movement.to_json(),
            "traffic": None if self.traffic is None else self.traffic.to_json(),
            "elapsed_seconds": _round(self.elapsed_seconds, 3),
        }


@dataclass(frozen=True)
class Report:
    """The whole result: mode, the parameters it ran with, one run per policy."""

    mode: str  # "offline" or "live"
    parameters: Mapping[str, object]
    runs: tuple[Run, ...]
    notes: tuple[str, ...] = field(default=())

    def to_json(self) -> JSONObject:
        return {
            "version": JSON_VERSION,
            "mode": self.mode,
            "parameters": dict(self.parameters),
            "runs": [run.to_json() for run in self.runs],
            "notes": list(self.notes),
        }
