"""Offline mode: the spread of synthetic users over replicas, without any network.

Tokens are 16 seeded random bytes, like ``objectGUID`` values; each is placed
with :func:`frontend.routing.hashing.choose`, exactly as the front end places
a user, over the replica list before and (for a change scenario) after the
change; an addition or removal goes through
:func:`frontend.routing.movement.placements`, the function ``feproxy plan``
places the directory's users with.
Only the counts of ``(server before, server after)`` pairs are kept, so a
million users take a few seconds and little memory.

A failure is computed without hashing most users again: ``choose`` with one
server unavailable gives the same answer as without, unless that server was
the user's choice.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Final

from frontend.loadtest.progress import NullProgress, Progress
from frontend.loadtest.report import Distribution, Movement, Run
from frontend.loadtest.scenario import (
    MAX_USERS,
    MIN_REPLICAS,
    Change,
    plan_change,
    server_name,
    server_names,
)
from frontend.routing.hashing import choose, policy_named
from frontend.routing.movement import Placement, placements

__all__ = ["MAX_USERS", "OfflinePlan", "simulate", "synthetic_tokens"]

#: Tokens hashed per batch (one progress update each).
_BATCH: Final = 50_000

#: Bytes in one synthetic token (an objectGUID).
TOKEN_BYTES: Final = 16


@dataclass(frozen=True)
class OfflinePlan:
    """What to simulate."""

    users: int
    replicas: int
    policy: str
    change: str | None = None
    seed: int = 1

    def __post_init__(self) -> None:
        if not 1 <= self.users <= MAX_USERS:
            raise ValueError(f"users must be in 1..{MAX_USERS}, got {self.users}")
        if self.replicas < MIN_REPLICAS:
            raise ValueError(f"replicas must be at least 2, got {self.replicas}")
        policy_named(self.policy)  # ValueError naming the known policies


def synthetic_tokens(count: int, seed: int, batch: int = _BATCH) -> Iterator[list[bytes]]:
    """``count`` seeded 16-byte tokens, in lists of at most ``batch``.

    The same ``seed`` gives the same tokens, whatever the batch size.
    """
    rng = random.Random(seed)  # noqa: S311 - reproducible synthetic tokens, not secrets
    left = count
    while left > 0:
        n = min(batch, left)
        raw = rng.randbytes(TOKEN_BYTES * n)
        yield [raw[i : i + TOKEN_BYTES] for i in range(0, len(raw), TOKEN_BYTES)]
        left -= n


def _change_for(plan: OfflinePlan) -> tuple[tuple[str, ...], Change | None]:
    replicas = server_names(plan.replicas)
    if plan.change is None:
        return replicas, None
    return replicas, plan_change(plan.change, replicas, spare=server_name(plan.replicas + 1))


def simulate(plan: OfflinePlan, progress: Progress | None = None) -> Run:
    """Place ``plan.users`` synthetic users with ``plan.policy``; see the module doc.

    ``progress`` is told the number of users placed, batch by batch.
    """
    bar = progress if progress is not None else NullProgress()
    policy = policy_named(plan.policy)
    replicas, change = _change_for(plan)
    started = time.perf_counter()
    pairs: Counter[tuple[str, str]] = Counter()
    before_only: Counter[str] = Counter()
    placed: Counter[Placement] = Counter()
    for tokens in synthetic_tokens(plan.users, plan.seed):
        if change is None:
            before_only.update(choose(policy, token, replicas) or "" for token in tokens)
        elif change.kind == "fail":
            down = change.unavailable
            before = [choose(policy, token, replicas) or "" for token in tokens]
            after = [
                b if b != change.server else (choose(policy, t, replicas, down) or "")
                for t, b in zip(tokens, before, strict=True)
            ]
            pairs.update(zip(before, after, strict=True))
        else:
            # The replica list changes: the very function `feproxy plan` uses.
            placed.update(placements(policy, tokens, change.before, change.after))
        bar.update(len(tokens))
    for placement, n in placed.items():
        pairs[(placement.before or "", placement.after or "")] += n
    if change is None:
        return Run(
            policy=policy.name,
            before=Distribution.from_counts(before_only, replicas),
            elapsed_seconds=time.perf_counter() - started,
        )
    users_before: Counter[str] = Counter()
    users_after: Counter[str] = Counter()
    for (b, a), n in pairs.items():
        users_before[b] += n
        users_after[a] += n
    return Run(
        policy=policy.name,
        before=Distribution.from_counts(users_before, replicas),
        after=Distribution.from_counts(users_after, change.survivors),
        movement=Movement.from_pairs(change, pairs),
        elapsed_seconds=time.perf_counter() - started,
    )
