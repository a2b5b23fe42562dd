"""Stable hashing of a user's token over a replica list (DESIGN.md sections 6, 7).

The front end sends each authenticated user of a general-purpose public-folder
tree to one of the servers that hold the tree (or that a referral named).  The
choice must be *sticky*: the same user and the same replica list give the same
server in every front-end process, on every machine, whatever order the list
came in.  Everything here is therefore pure (no I/O, no Twisted) and built on
:mod:`hashlib` (BLAKE2b), never on Python's salted :func:`hash`.

Two policies, chosen in configuration (:data:`POLICIES`, :func:`policy_named`):

``rendezvous`` (highest random weight; the default)
    Each server gets the weight ``blake2b(server name lowercased, token)``;
    the user's preference order is by descending weight (ties, which need a
    64-bit collision, are broken by name).  Adding a replica moves about
    ``1/(n+1)`` of the users, all of them to the new server; removing one
    moves only that server's users, and the fallback order spreads a failed
    server's users evenly over the survivors.

``exchange``
    Reproduces Exchange 2003's documented behaviour: the token space is split
    into ``n`` equal ranges over the list sorted by name (case-insensitively)
    and the user goes to the range holding their position
    (:func:`exchange_position`, a hash of the token mapped to ``[0, 1)``).
    With users A..F in increasing position, two servers split them
    A,B,C | D,E,F and three split them A,B | C,D | E,F.  The fallback order is
    the chosen server, then the choice over the list without it (ranges
    recomputed), and so on.  A failed server's users therefore go to its
    name-order neighbours only: server k of n (0 < k < n-1) sends k/(n-1) of
    them to server k-1 and the rest to server k+1, while the first and last
    servers send all of theirs to their one neighbour.  Adding a replica
    moves far more than ``1/(n+1)`` of the users (exactly half when the new
    name sorts first or last, some of them between old servers), which is
    why ``rendezvous`` is the default.

Server names are compared case-insensitively (they are DNS host names): a
list naming ``EX1`` and ``ex1`` holds one server, returned in one of the
spellings given (the smallest, so that the answer does not depend on the
order of the list).

The hash constructions are part of the deployment's behaviour: changing them
moves every user.  ``tests/test_hashing.py`` pins known answers.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Container, Iterable, Mapping, Sequence
from functools import lru_cache
from types import MappingProxyType
from typing import Final, Protocol

__all__ = [
    "DEFAULT_POLICY",
    "POLICIES",
    "ExchangePolicy",
    "HashPolicy",
    "RendezvousPolicy",
    "choose",
    "exchange_position",
    "policy_named",
]

#: BLAKE2b personalisation strings (domain separation between the two uses;
#: the ``v1`` is part of the stable construction, see the module docstring).
_PERSON_RENDEZVOUS: Final = b"feproxy-hrw-v1"
_PERSON_POSITION: Final = b"feproxy-pos-v1"

#: Bits of the position hash kept, so that positions are exact binary floats.
_POSITION_BITS: Final = 53
_POSITION_SCALE: Final = float(1 << _POSITION_BITS)

#: Prepared replica lists kept per policy (lists are few; tokens are many).
_CACHE_SIZE: Final = 1024

#: A prepared server: (name as given, name lowercased).
_Server = tuple[str, str]
#: A prepared rendezvous server: (name, lowercased, BLAKE2b state primed with it).
_WeightedServer = tuple[str, str, hashlib.blake2b]
#: Answers whether (name, lowercased name) is marked unavailable.
_Unavailable = Callable[[str, str], bool]
#: Collections whose emptiness :func:`choose` can test cheaply.
_PLAIN_COLLECTIONS: Final = frozenset({tuple, list, set, frozenset, dict})


class HashPolicy(Protocol):
    """A way of ordering a replica list for one user's token."""

    name: str

    def order(self, token: bytes, servers: Sequence[str]) -> tuple[str, ...]:
        """All of `servers` (deduplicated, compared case-insensitively, returned
        as given), in this user's preference order; [0] is the user's server,
        the rest are the fallbacks used in turn when earlier ones are marked
        unavailable."""
        ...


# ---------------------------------------------------------------------------
# Replica-list preparation (cached: the same few lists are hashed over and
# over, once per request).


def _as_tuple(servers: Sequence[str]) -> tuple[str, ...]:
    """`servers` as a tuple (the cache key), refusing a lone ``str``."""
    if isinstance(servers, tuple):
        return servers
    if isinstance(servers, str):
        raise TypeError("servers must be a sequence of host names, not a str")
    return tuple(servers)


@lru_cache(maxsize=_CACHE_SIZE)
def _prepare(servers: tuple[str, ...]) -> tuple[_Server, ...]:
    """Deduplicate `servers` case-insensitively and sort them by name.

    Of several spellings of one name the smallest is kept, so the result does
    not depend on the order of `servers`.
    """
    spelling: dict[str, str] = {}
    for name in servers:
        if not isinstance(name, str):
            raise TypeError(f"server names must be str, not {type(name).__name__}")
        lower = name.lower()
        kept = spelling.get(lower)
        if kept is None or name < kept:
            spelling[lower] = name
    return tuple((spelling[lower], lower) for lower in sorted(spelling))


@lru_cache(maxsize=_CACHE_SIZE)
def _prepare_weighted(servers: tuple[str, ...]) -> tuple[_WeightedServer, ...]:
    """:func:`_prepare`, each server with a BLAKE2b state primed with its name.

    The weight of a server for a token is the 64-bit big-endian integer
    ``blake2b(len(name) as 4 bytes || name || token, digest_size=8,
    person="feproxy-hrw-v1")`` where ``name`` is the lowercased name in UTF-8;
    the length prefix makes the (name, token) encoding unambiguous.  Copying
    the primed state costs less than hashing the name again for every token.
    """
    prepared = []
    for name, lower in _prepare(servers):
        encoded = lower.encode("utf-8")
        primed = hashlib.blake2b(
            len(encoded).to_bytes(4, "big") + encoded,
            digest_size=8,
            person=_PERSON_RENDEZVOUS,
        )
        prepared.append((name, lower, primed))
    return tuple(prepared)


def _unavailable_test(unavailable: Container[str]) -> _Unavailable | None:
    """A case-insensitive membership test for `unavailable`, None if empty."""
    if type(unavailable) in _PLAIN_COLLECTIONS:
        if not unavailable:
            return None
    elif isinstance(unavailable, str):
        raise TypeError("unavailable must be a collection of host names, not a str")
    if isinstance(unavailable, Iterable):
        lowered = frozenset(u.lower() for u in unavailable if isinstance(u, str))
        if not lowered:
            return None
        return lambda _name, lower: lower in lowered
    # A bare Container cannot be listed: try both spellings we know.
    return lambda name, lower: name in unavailable or lower in unavailable


# ---------------------------------------------------------------------------
# Rendezvous (highest random weight).


class RendezvousPolicy:
    """Highest random weight: order servers by ``hash(server, token)``."""

    name: str = "rendezvous"

    def order(self, token: bytes, servers: Sequence[str]) -> tuple[str, ...]:
        """All of `servers`, deduplicated, by descending weight for `token`."""
        weighted = []
        for name, lower, primed in _prepare_weighted(_as_tuple(servers)):
            h = primed.copy()
            h.update(token)
            weighted.append((-int.from_bytes(h.digest(), "big"), lower, name))
        weighted.sort()
        return tuple(entry[2] for entry in weighted)

    def _choose(
        self, token: bytes, servers: Sequence[str], skip: _Unavailable | None
    ) -> str | None:
        """The available server of highest weight for `token`, or None."""
        best: str | None = None
        best_weight = -1
        best_lower = ""
        from_bytes = int.from_bytes
        for name, lower, primed in _prepare_weighted(_as_tuple(servers)):
            if skip is not None and skip(name, lower):
                continue
            h = primed.copy()
            h.update(token)
            weight = from_bytes(h.digest(), "big")
            if weight > best_weight or (weight == best_weight and lower < best_lower):
                best, best_weight, best_lower = name, weight, lower
        return best

    def __repr__(self) -> str:
        return "RendezvousPolicy()"


# ---------------------------------------------------------------------------
# Exchange 2003 (equal ranges over the sorted list).


def _position_bits(token: bytes) -> int:
    """The token's position as a 53-bit integer (position = this / 2**53)."""
    digest = hashlib.blake2b(token, digest_size=8, person=_PERSON_POSITION).digest()
    return int.from_bytes(digest, "big") >> (64 - _POSITION_BITS)


def exchange_position(token: bytes) -> float:
    """The user's position in the token space, in ``[0, 1)``.

    It is the top 53 bits of ``blake2b(token, digest_size=8,
    person="feproxy-pos-v1")`` divided by ``2**53``, so it is an exact float
    and the ``exchange`` policy puts the user on server ``floor(position * n)``
    of the ``n`` servers sorted by name (computed in exact integer arithmetic).
    The token is hashed because objectSid values share long prefixes: their
    raw bytes would crowd into a few ranges.
    """
    return _position_bits(token) / _POSITION_SCALE


_RENDEZVOUS: Final = RendezvousPolicy()


class ExchangePolicy:
    """Exchange 2003: ``n`` equal ranges of the token space over the sorted list."""

    name: str = "exchange"

    def order(self, token: bytes, servers: Sequence[str]) -> tuple[str, ...]:
        """The server whose range holds the token, then the rest in rendezvous order.

        Recomputing the ranges over the survivors (as Exchange 2003 did) would
        send a failed server's users to its one or two name-order neighbours
        only; rendezvous order over the rest spreads them over every survivor.
        """
        prepared = _prepare(_as_tuple(servers))
        if not prepared:
            return ()
        first = prepared[(_position_bits(token) * len(prepared)) >> _POSITION_BITS][0]
        rest = tuple(name for name, _ in prepared if name != first)
        return (first, *_RENDEZVOUS.order(token, rest))

    def _choose(
        self, token: bytes, servers: Sequence[str], skip: _Unavailable | None
    ) -> str | None:
        """The first available server of :meth:`order`, computed lazily."""
        prepared = _prepare(_as_tuple(servers))
        if not prepared:
            return None
        name, lower = prepared[(_position_bits(token) * len(prepared)) >> _POSITION_BITS]
        if skip is None or not skip(name, lower):
            return name
        rest = tuple(n for n, _ in prepared if n != name)
        return _RENDEZVOUS._choose(token, rest, skip)

    def __repr__(self) -> str:
        return "ExchangePolicy()"


# ---------------------------------------------------------------------------
# Public entry points.


def choose(
    policy: HashPolicy,
    token: bytes,
    servers: Sequence[str],
    unavailable: Container[str] = (),
) -> str | None:
    """The first server of ``policy.order(token, servers)`` not in `unavailable`.

    `unavailable` is compared case-insensitively (fully so when it can be
    iterated, e.g. a set; a bare container is asked for the name as given and
    lowercased).  Returns None when `servers` is empty or every server is
    unavailable.
    """
    skip = _unavailable_test(unavailable)
    if type(policy) is RendezvousPolicy or type(policy) is ExchangePolicy:
        return policy._choose(token, servers, skip)
    for name in policy.order(token, servers):
        if skip is None or not skip(name, name.lower()):
            return name
    return None


POLICIES: Final[Mapping[str, HashPolicy]] = MappingProxyType(
    {"rendezvous": _RENDEZVOUS, "exchange": ExchangePolicy()}
)
"""The known policies by configuration name."""

DEFAULT_POLICY: Final = "rendezvous"
"""The policy used when the configuration names none (DESIGN.md section 6)."""


def policy_named(name: str) -> HashPolicy:
    """The policy called `name` (case-insensitive, surrounding blanks ignored).

    Raises ValueError naming the known policies when there is none by that name.
    """
    key = name.strip().lower() if isinstance(name, str) else name
    try:
        return POLICIES[key]
    except (KeyError, TypeError):
        known = ", ".join(sorted(POLICIES))
        raise ValueError(
            f"unknown public-folder hash policy {name!r}; known policies: {known}"
        ) from None
