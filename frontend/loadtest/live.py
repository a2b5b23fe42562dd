"""Live mode: drive users through a front end and measure where they land.

The run is a number of rounds (``--requests-per-user``); in each round every
user sends one GET for the folder.  With a change scenario the change is
made between two rounds, after round ``clamp(round(at x rounds), 1,
rounds - 1)``, with no request in flight, and the next round starts once
the front end is subject to it.  Each user's server in the last round before
the change and in the first round after it give the movement; a user seen on
two servers within one phase is a stickiness violation.

When the load test made the users (it knows their tokens and the policy), it
also predicts every user's server with :func:`frontend.hashing.choose` and
counts the users routed otherwise (``prediction_mismatches``).
"""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from frontend.loadtest.driver import Driver, Observation
from frontend.loadtest.progress import NullProgress, Progress
from frontend.loadtest.report import Distribution, Movement, RoundTiming, Run, Traffic
from frontend.loadtest.scenario import MIN_REPLICAS, Change, plan_change
from frontend.loadtest.stats import percentile
from frontend.loadtest.targets import Target, TargetError
from frontend.routing.hashing import choose, policy_named

if TYPE_CHECKING:
    from frontend.ops.reactor import IServeReactor

__all__ = ["LivePlan", "change_round", "run_live", "summarize"]

#: A change is made between two rounds: one request per user before, one after.
_ROUNDS_AROUND_A_CHANGE: Final = 2


@dataclass(frozen=True)
class LivePlan:
    """How to drive the target."""

    requests_per_user: int
    concurrency: int
    change: str | None = None
    at: float = 0.5
    seed: int = 1
    request_timeout: float = 30.0

    def __post_init__(self) -> None:
        if self.requests_per_user < 1:
            raise ValueError("requests per user must be at least 1")
        if self.change is not None and self.requests_per_user < _ROUNDS_AROUND_A_CHANGE:
            raise ValueError("a change needs at least 2 requests per user (one on each side)")
        if not 0.0 <= self.at <= 1.0:
            raise ValueError(f"--at must be in 0..1, got {self.at}")
        if self.concurrency < 1:
            raise ValueError("concurrency must be at least 1")


def change_round(rounds: int, at: float) -> int:
    """How many rounds run before the change: ``round(at x rounds)`` kept in
    ``1 .. rounds - 1`` so that every user is seen on both sides."""
    return min(rounds - 1, max(1, round(at * rounds)))


async def run_live(
    reactor: IServeReactor, target: Target, plan: LivePlan, progress: Progress | None = None
) -> Run:
    """Drive ``target`` as ``plan`` says and summarize the observations."""
    bar = progress if progress is not None else NullProgress()
    if plan.change is not None and plan.change not in target.changes:
        supported = ", ".join(sorted(target.changes)) or "none"
        raise TargetError(f"--change {plan.change} is not supported here (supported: {supported})")
    rng = random.Random(plan.seed)  # noqa: S311 - a reproducible request order, not a secret
    driver = Driver(
        reactor,
        target.url,
        target.users,
        concurrency=plan.concurrency,
        request_timeout=plan.request_timeout,
        progress=bar,
    )
    rounds = plan.requests_per_user
    split = rounds if plan.change is None else change_round(rounds, plan.at)
    change: Change | None = None
    timings: list[RoundTiming] = []
    applied = False
    try:
        for number in range(rounds):
            if number == split:
                change = _plan(plan.change, target, driver.observations)
                bar.set_postfix_str(change.description)
                applied = True
                await target.apply(reactor, change)
            order = list(range(len(target.users)))
            rng.shuffle(order)
            started, sent = reactor.seconds(), len(driver.observations)
            await driver.round(number, order)
            timings.append(
                RoundTiming(
                    number + 1,
                    len(driver.observations) - sent,
                    reactor.seconds() - started,
                    after_change=number >= split,
                )
            )
    finally:
        await driver.close()
        if applied:
            await target.undo(reactor)
    return summarize(driver.observations, split, change, target, plan.concurrency, timings)


def _plan(kind: str | None, target: Target, seen: Sequence[Observation]) -> Change:
    if kind is None:
        raise ValueError("no change to plan")
    replicas = target.replicas
    if replicas is None:
        replicas = tuple(sorted({o.server for o in seen if o.ok and o.server is not None}))
        if len(replicas) < MIN_REPLICAS:
            raise TargetError(f"--change {kind} needs two servers; the answers named {replicas}")
    return plan_change(kind, replicas, spare=target.spare)


def _phase(observations: Sequence[Observation]) -> tuple[dict[int, list[str]], Counter[str]]:
    """Per user the servers that answered (in order); requests per server."""
    servers: dict[int, list[str]] = defaultdict(list)
    requests: Counter[str] = Counter()
    for o in observations:
        if o.ok and o.server is not None:
            servers[o.user].append(o.server)
            requests[o.server] += 1
    return servers, requests


def _users_per_server(servers: dict[int, list[str]]) -> Counter[str]:
    counts: Counter[str] = Counter()
    for seen in servers.values():
        counts.update(set(seen))
    return counts


def _violations(servers: dict[int, list[str]]) -> int:
    return sum(1 for seen in servers.values() if len({s.lower() for s in seen}) > 1)


def _mismatches(
    target: Target,
    before: dict[int, list[str]],
    after: dict[int, list[str]],
    change: Change | None,
) -> int | None:
    if target.policy is None or target.replicas is None:
        return None
    if any(u.token is None for u in target.users):
        return None
    policy = policy_named(target.policy)
    wrong: set[int] = set()
    for user, seen in before.items():
        token = target.users[user].token or b""
        expected = (choose(policy, token, target.replicas) or "").lower()
        if any(s.lower() != expected for s in seen):
            wrong.add(user)
    if change is not None:
        for user, seen in after.items():
            token = target.users[user].token or b""
            expected = (choose(policy, token, change.after, change.unavailable) or "").lower()
            if any(s.lower() != expected for s in seen):
                wrong.add(user)
    return len(wrong)


def _traffic(
    observations: Sequence[Observation],
    concurrency: int,
    timings: Sequence[RoundTiming],
    violations: tuple[int, int | None],
    mismatches: int | None,
) -> Traffic:
    statuses = Counter("error" if o.status is None else str(o.status) for o in observations)
    errors = Counter(o.error for o in observations if o.error is not None)
    latencies = sorted(o.latency * 1000.0 for o in observations)
    succeeded = sum(1 for o in observations if o.ok)
    busy = sum(t.seconds for t in timings)
    return Traffic(
        requests=len(observations),
        succeeded=succeeded,
        failed=len(observations) - succeeded,
        statuses=dict(sorted(statuses.items())),
        errors=dict(sorted(errors.items())),
        elapsed_seconds=busy,
        requests_per_second=len(observations) / busy if busy > 0 else 0.0,
        latency_ms={
            "p50": percentile(latencies, 50),
            "p90": percentile(latencies, 90),
            "p99": percentile(latencies, 99),
            "max": latencies[-1] if latencies else 0.0,
        },
        rounds=tuple(timings),
        concurrency=concurrency,
        stickiness_violations_before=violations[0],
        stickiness_violations_after=violations[1],
        prediction_mismatches=mismatches,
    )


def summarize(
    observations: Sequence[Observation],
    split: int,
    change: Change | None,
    target: Target,
    concurrency: int,
    timings: Sequence[RoundTiming],
) -> Run:
    """The run's report from its observations (rounds before ``split`` are
    before the change); ``timings`` say how long each round took."""
    before, before_requests = _phase([o for o in observations if o.round < split])
    after, after_requests = _phase([o for o in observations if o.round >= split])
    replicas = target.replicas or tuple(sorted(before_requests))
    expected_before = change.before if change is not None else replicas
    distribution_before = Distribution.from_counts(
        _users_per_server(before), expected_before, before_requests
    )
    distribution_after = movement = None
    violations_after: int | None = None
    if change is not None:
        distribution_after = Distribution.from_counts(
            _users_per_server(after), change.survivors, after_requests
        )
        pairs: Counter[tuple[str, str]] = Counter()
        for user, seen in before.items():
            if user in after:
                pairs[seen[-1], after[user][0]] += 1
        movement = Movement.from_pairs(change, pairs)
        violations_after = _violations(after)
    traffic = _traffic(
        observations,
        concurrency,
        timings,
        (_violations(before), violations_after),
        _mismatches(target, before, after, change),
    )
    return Run(
        policy=target.policy,
        before=distribution_before,
        after=distribution_after,
        movement=movement,
        traffic=traffic,
        elapsed_seconds=traffic.elapsed_seconds,
    )
