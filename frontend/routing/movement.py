"""Who moves when a public-folder tree's replica list (or a mailbox store's
public store) changes: the front end's first choice for each user, before
and after.

Pure, like the rest of the routing decisions.  ``feproxy plan`` places the
directory's real users with :func:`placements` and ``feproxy loadtest
offline`` places its synthetic tokens with the same function, so the two
cannot disagree on who moves; :class:`MoveSummary` counts the result.

A user's first server is what :func:`frontend.routing.decisions.public_order`
puts first: the home server (the public store of the user's mailbox store,
default tree only), else the first of the user's hash order over the
replicas (:func:`frontend.routing.hashing.choose`, which is that order's
first server), else, without a token (a front end that does not
authenticate), the first replica in name order.  Unavailable marks are not
considered: a plan is about the directory, not about a server that happens
to be down.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple

from frontend.routing.decisions import public_order
from frontend.routing.hashing import HashPolicy, choose

__all__ = ["MoveSummary", "Placement", "first_server", "placements"]


class Placement(NamedTuple):
    """One user's first server before and after a change (None: no server)."""

    before: str | None
    after: str | None

    @property
    def moves(self) -> bool:
        """Whether the change sends this user to another server (names compare
        case-insensitively, as host names do)."""
        return _lower(self.before) != _lower(self.after)


def _lower(name: str | None) -> str | None:
    return None if name is None else name.lower()


def first_server(
    policy: HashPolicy,
    token: bytes | None,
    replicas: Sequence[str],
    *,
    home: str | None = None,
) -> str | None:
    """The server the front end tries first for a public-folder request:
    ``public_order(policy, token, replicas, home=home)[0]``, without ordering
    the rest; None when there is no server at all."""
    if home:
        return home
    if token is None:
        order = public_order(policy, None, replicas)
        return order[0] if order else None
    return choose(policy, token, replicas)


def placements(
    policy: HashPolicy,
    tokens: Iterable[bytes | None],
    before: Sequence[str],
    after: Sequence[str],
    *,
    home_before: str | None = None,
    home_after: str | None = None,
) -> list[Placement]:
    """Each token's first server over the replica list ``before`` (with the
    home server ``home_before``), then over ``after`` (with ``home_after``),
    in the order of ``tokens``."""
    before, after = tuple(before), tuple(after)
    if home_before is None and home_after is None:
        # The common case (a general-purpose tree), kept lean for the load
        # test's million tokens: first_server() without its branches.
        make = Placement._make
        return [
            make((choose(policy, token, before), choose(policy, token, after)))
            if token is not None
            else Placement(first_server(policy, None, before), first_server(policy, None, after))
            for token in tokens
        ]
    return [
        Placement(
            first_server(policy, token, before, home=home_before),
            first_server(policy, token, after, home=home_after),
        )
        for token in tokens
    ]


def _sort_key(name: str) -> tuple[str, str]:
    return (name.lower(), name)


@dataclass(frozen=True)
class MoveSummary:
    """The counts of a set of placements.

    ``moves`` counts the users that move, by (from, to) server; ``before``
    and ``after`` the users per server (every server of ``servers`` listed,
    with 0 when it has none).  A missing server (None) is counted under "".
    """

    users: int
    moving: int
    moves: Mapping[tuple[str, str], int]
    before: Mapping[str, int]
    after: Mapping[str, int]

    @property
    def moved_fraction(self) -> float:
        """The share of the users that move (0.0 without users)."""
        return self.moving / self.users if self.users else 0.0

    @classmethod
    def of(
        cls, placed: Iterable[Placement] | Mapping[Placement, int], servers: Iterable[str] = ()
    ) -> MoveSummary:
        """The summary of ``placed`` (placements, or their counts); ``servers``
        are listed in the per-server totals even when no user is on them."""
        counts: Mapping[Placement, int] = placed if isinstance(placed, Mapping) else Counter(placed)
        moves: Counter[tuple[str, str]] = Counter()
        listed = dict.fromkeys(servers, 0)
        before: Counter[str] = Counter(listed)
        after: Counter[str] = Counter(listed)
        for placement, n in counts.items():
            old, new = placement.before or "", placement.after or ""
            before[old] += n
            after[new] += n
            if placement.moves:
                moves[(old, new)] += n
        names = sorted(set(before) | set(after), key=_sort_key)
        return cls(
            users=sum(counts.values()),
            moving=sum(moves.values()),
            moves=dict(sorted(moves.items(), key=lambda kv: (-kv[1], *kv[0]))),
            before={name: before[name] for name in names},
            after={name: after[name] for name in names},
        )
