"""The replica sets of a load test and the change scenarios applied to them.

Shared by the offline simulation and the live run so that both name servers
alike and change the same server:

``add``
    a spare server gets a replica: it sorts after every replica
    (``pf05`` after ``pf01``..``pf04``); ideally ``1/(n+1)`` of the users
    move, all of them to the new server.
``remove``
    the last replica in name order loses its replica (its store is deleted
    from the directory); ideally ``1/n`` of the users move, only those of the
    removed server.
``fail``
    the last replica in name order stops accepting connections; the replica
    list does not change; exactly that server's users should move.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

__all__ = [
    "CHANGES",
    "DOMAIN",
    "MAX_REPLICAS",
    "MAX_USERS",
    "MIN_REPLICAS",
    "Change",
    "plan_change",
    "server_name",
    "server_names",
    "victim",
]

#: The change scenarios, by command-line name.
CHANGES: Final = ("add", "remove", "fail")

#: The fewest replicas a spread (and so a removal or failure) makes sense with.
MIN_REPLICAS: Final = 2

#: The most replicas a live run starts: its servers live on 127.0.0.2 ..
#: 127.0.0.(1 + replicas + spares).
MAX_REPLICAS: Final = 64

#: The most users one offline run may simulate (memory stays small; time grows).
MAX_USERS: Final = 10_000_000

#: The DNS domain of generated servers (the example organisation's).
DOMAIN: Final = "example.com"


def server_name(index: int) -> str:
    """The host name of generated server ``index`` (1-based): ``pf01.example.com``."""
    if index < 1:
        raise ValueError(f"server indexes start at 1, got {index}")
    return f"pf{index:02d}.{DOMAIN}"


def server_names(count: int, first: int = 1) -> tuple[str, ...]:
    """``count`` generated host names starting at index ``first``."""
    return tuple(server_name(i) for i in range(first, first + count))


def victim(replicas: Sequence[str]) -> str:
    """The replica removed or failed: the last one in (case-insensitive) name order."""
    if not replicas:
        raise ValueError("no replica to remove or fail")
    return max(replicas, key=lambda name: (name.lower(), name))


@dataclass(frozen=True)
class Change:
    """A change of the replica set.

    ``before`` and ``after`` are the replica lists the front end hashes over;
    ``unavailable`` the servers marked down after the change (``fail``).
    ``survivors`` are the servers users may be on after the change.
    """

    kind: str
    server: str
    before: tuple[str, ...]
    after: tuple[str, ...]
    unavailable: frozenset[str] = frozenset()

    @property
    def survivors(self) -> tuple[str, ...]:
        """The replicas that serve users after the change."""
        down = {name.lower() for name in self.unavailable}
        return tuple(name for name in self.after if name.lower() not in down)

    @property
    def description(self) -> str:
        """One line for the report: what changed."""
        if self.kind == "add":
            return f"{self.server} added as a replica"
        if self.kind == "remove":
            return f"{self.server} removed from the replicas"
        return f"{self.server} failed (refuses connections)"

    def ideal_fraction(self, share_of_server: float) -> float:
        """The fraction of users that should move, ideally.

        ``share_of_server`` is the share of the users that the removed or
        failed server had before the change: a failure should move exactly
        those users; a removal ideally moves ``1/n`` (the share the server
        would have with a perfectly even spread); an addition ``1/(n+1)``.
        """
        if self.kind == "add":
            return 1.0 / len(self.after)
        if self.kind == "remove":
            return 1.0 / len(self.before)
        return share_of_server


def plan_change(kind: str, replicas: Sequence[str], spare: str | None = None) -> Change:
    """The change ``kind`` applied to ``replicas`` (``spare``: the server an
    ``add`` gives a replica to)."""
    before = tuple(replicas)
    if kind == "add":
        if spare is None:
            raise ValueError("adding a replica needs a spare server")
        if spare.lower() in {name.lower() for name in before}:
            raise ValueError(f"{spare} already holds a replica")
        return Change(kind, spare, before, (*before, spare))
    if len(before) < MIN_REPLICAS:
        raise ValueError(f"{kind} needs at least two replicas, got {len(before)}")
    gone = victim(before)
    if kind == "remove":
        return Change(kind, gone, before, tuple(n for n in before if n != gone))
    if kind == "fail":
        return Change(kind, gone, before, before, frozenset({gone}))
    raise ValueError(f"unknown change {kind!r}; known: {', '.join(CHANGES)}")
