"""Tests for frontend.routing.hashing: sticky, balanced choice of a public-folder server."""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import random
import subprocess
import sys
from collections import Counter
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from frontend.routing.hashing import (
    DEFAULT_POLICY,
    POLICIES,
    ExchangePolicy,
    HashPolicy,
    RendezvousPolicy,
    choose,
    exchange_position,
    policy_named,
)

REPO_ROOT = Path(__file__).resolve().parents[1]

RENDEZVOUS = POLICIES["rendezvous"]
EXCHANGE = POLICIES["exchange"]
BOTH = pytest.mark.parametrize("policy", [RENDEZVOUS, EXCHANGE], ids=lambda p: p.name)
#: For property tests: pytest-twisted re-wraps a test function once per
#: parametrization, which breaks @given, so they draw the policy instead.
ANY_POLICY = st.sampled_from([RENDEZVOUS, EXCHANGE])

#: Deterministic property tests: the same examples on every run and machine.
PROPERTY = settings(deadline=None, max_examples=150, derandomize=True, database=None)

#: Names in several spellings, to exercise the case-insensitive dedupe.
NAME_VARIANTS = [
    "ex1.example.com",
    "EX1.example.com",
    "ex2.example.com",
    "Ex2.Example.Com",
    "ex3.example.com",
    "pf-a.example.com",
    "PF-B.EXAMPLE.COM",
    "pf-b.example.com",
    "zeta.example.com",
    "alpha.example.com",
]

#: Upper 0.1% points of the chi-square distribution, by degrees of freedom.
CHI2_999 = {1: 10.83, 2: 13.82, 3: 16.27, 4: 18.47, 5: 20.52, 6: 22.46, 7: 24.32}

USERS = 20_000


def servers_named(n: int) -> list[str]:
    """n host names ex1.example.com .. exN.example.com."""
    return [f"ex{i}.example.com" for i in range(1, n + 1)]


def random_tokens(count: int, seed: int) -> list[bytes]:
    """`count` random 28-byte tokens from a seeded generator."""
    rng = random.Random(seed)  # noqa: S311 - reproducible test tokens, not secrets
    return [rng.randbytes(28) for _ in range(count)]


def sid(rid: int) -> bytes:
    """A binary objectSid S-1-5-21-<fixed domain>-<rid> (tokens share a prefix)."""
    domain = (0x1234ABCD, 0x2345BCDE, 0x3456CDEF)
    return (
        bytes([1, 5])
        + (5).to_bytes(6, "big")
        + (21).to_bytes(4, "little")
        + b"".join(part.to_bytes(4, "little") for part in domain)
        + rid.to_bytes(4, "little")
    )


def sequential_sids(count: int) -> list[bytes]:
    """`count` objectSids with consecutive RIDs, as a directory hands them out."""
    return [sid(1000 + i) for i in range(count)]


def assignment(
    policy: HashPolicy,
    tokens: Sequence[bytes],
    servers: Sequence[str],
    unavailable: frozenset[str] = frozenset(),
) -> list[str | None]:
    """The server chosen for each token."""
    return [choose(policy, token, servers, unavailable) for token in tokens]


def chi_square(counts: Counter[str | None], servers: Sequence[str]) -> float:
    """Pearson's statistic of `counts` against a uniform spread over `servers`."""
    total = sum(counts.values())
    expected = total / len(servers)
    return sum((counts[s] - expected) ** 2 / expected for s in servers)


def moved_fraction(before: Sequence[object], after: Sequence[object]) -> float:
    """The fraction of users whose server differs between two assignments."""
    return sum(a != b for a, b in zip(before, after, strict=True)) / len(before)


def tokens_in_sixths() -> list[bytes]:
    """Six tokens A..F, the k-th one with its exchange position in [k/6, (k+1)/6)."""
    found: dict[int, bytes] = {}
    i = 0
    while len(found) < 6:
        token = f"user-{i}".encode()
        found.setdefault(int(exchange_position(token) * 6), token)
        i += 1
    return [found[k] for k in range(6)]


# ---------------------------------------------------------------------------
# The documented Exchange behaviour.


def test_exchange_reproduces_documented_six_user_example() -> None:
    """Users A..F split A,B,C | D,E,F over two servers, A,B | C,D | E,F over three."""
    users = tokens_in_sixths()
    positions = [exchange_position(token) for token in users]
    assert positions == sorted(positions)
    assert [int(p * 6) for p in positions] == [0, 1, 2, 3, 4, 5]

    # Given unsorted and in mixed case: a case-sensitive sort would put the
    # capitalised names first, the documented (case-insensitive) one does not.
    two = ["Bravo.example.com", "alpha.example.com"]
    assert [choose(EXCHANGE, u, two) for u in users] == [
        "alpha.example.com",
        "alpha.example.com",
        "alpha.example.com",
        "Bravo.example.com",
        "Bravo.example.com",
        "Bravo.example.com",
    ]
    three = ["Charlie.example.com", "alpha.example.com", "Bravo.example.com"]
    assert [choose(EXCHANGE, u, three) for u in users] == [
        "alpha.example.com",
        "alpha.example.com",
        "Bravo.example.com",
        "Bravo.example.com",
        "Charlie.example.com",
        "Charlie.example.com",
    ]


def test_exchange_fallbacks_follow_rendezvous_order_over_the_rest() -> None:
    """After the range's server, the order is rendezvous order over the others."""
    three = ["charlie", "alpha", "bravo"]
    for token, first in zip(
        tokens_in_sixths(), ["alpha"] * 2 + ["bravo"] * 2 + ["charlie"] * 2, strict=True
    ):
        order = EXCHANGE.order(token, three)
        rest = [s for s in three if s != first]
        assert order == (first, *RENDEZVOUS.order(token, rest))
        assert choose(EXCHANGE, token, three, {first}) == order[1]


@PROPERTY
@given(token=st.binary(max_size=64), n=st.integers(min_value=1, max_value=20))
def test_exchange_puts_position_p_on_server_floor_p_times_n(token: bytes, n: int) -> None:
    """The position is in [0, 1) and selects range floor(p * n) of the sorted list."""
    p = exchange_position(token)
    assert 0.0 <= p < 1.0
    servers = servers_named(n)
    by_name = sorted(servers, key=str.lower)
    index = int(Fraction(p) * n)  # exact floor, no float rounding
    assert choose(EXCHANGE, token, list(reversed(servers))) == by_name[index]


# ---------------------------------------------------------------------------
# Stickiness and stability.


@PROPERTY
@given(policy=ANY_POLICY, token=st.binary(max_size=40), data=st.data())
def test_same_token_and_list_give_same_order_whatever_the_list_order(
    policy: HashPolicy, token: bytes, data: st.DataObject
) -> None:
    """order() and choose() do not depend on the order in which the list is given."""
    servers = data.draw(st.lists(st.sampled_from(NAME_VARIANTS), max_size=12))
    shuffled = data.draw(st.permutations(servers))
    assert policy.order(token, shuffled) == policy.order(token, servers)
    assert policy.order(token, tuple(servers)) == policy.order(token, servers)
    assert choose(policy, token, shuffled) == choose(policy, token, servers)


@PROPERTY
@given(policy=ANY_POLICY, token=st.binary(max_size=40), data=st.data())
def test_order_is_the_case_insensitive_dedupe_of_the_list(
    policy: HashPolicy, token: bytes, data: st.DataObject
) -> None:
    """order() names each server once, in one of the spellings it was given."""
    servers = data.draw(st.lists(st.sampled_from(NAME_VARIANTS), max_size=12))
    ordered = policy.order(token, servers)
    assert sorted(s.lower() for s in ordered) == sorted({s.lower() for s in servers})
    assert set(ordered) <= set(servers)


@PROPERTY
@given(policy=ANY_POLICY, token=st.binary(max_size=40), data=st.data())
def test_choose_is_the_first_of_order_not_marked_unavailable(
    policy: HashPolicy, token: bytes, data: st.DataObject
) -> None:
    """choose() agrees with order() for any set of marks, in any case."""
    servers = data.draw(st.lists(st.sampled_from(NAME_VARIANTS), max_size=10))
    marked = data.draw(st.sets(st.sampled_from(NAME_VARIANTS)))
    marks = {name.upper() for name in marked}
    down = {name.lower() for name in marked}
    expected = next((s for s in policy.order(token, servers) if s.lower() not in down), None)
    assert choose(policy, token, servers, marks) == expected
    assert choose(policy, token, servers, frozenset(marked)) == expected


def test_choices_are_the_same_in_another_process_with_another_hash_seed() -> None:
    """A child process with a different PYTHONHASHSEED makes the same choices."""
    tokens = [b"", b"alice", sid(1234), *random_tokens(20, seed=7)]
    servers = ["ex3.example.com", "EX1.example.com", "ex2.example.com", "ex4"]
    here = {name: [policy.order(t, servers) for t in tokens] for name, policy in POLICIES.items()}
    code = (
        "import json, sys\n"
        "from frontend.routing.hashing import POLICIES\n"
        "tokens, servers = json.loads(sys.stdin.read())\n"
        "tokens = [bytes.fromhex(t) for t in tokens]\n"
        "print(json.dumps({n: [p.order(t, servers) for t in tokens]\n"
        "                  for n, p in POLICIES.items()}))\n"
    )
    seed = "1" if os.environ.get("PYTHONHASHSEED") != "1" else "2"
    env = dict(os.environ, PYTHONHASHSEED=seed)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH")) if p)
    child = subprocess.run(
        [sys.executable, "-c", code],
        input=json.dumps([[t.hex() for t in tokens], servers]),
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        env=env,
        timeout=60,
        check=True,
    )
    there = json.loads(child.stdout)
    assert there == {name: [list(o) for o in orders] for name, orders in here.items()}


def test_known_answers_are_pinned() -> None:
    """The hash constructions are frozen: changing them would move every user."""
    servers = servers_named(5)
    assert exchange_position(b"") == float.fromhex("0x1.d91af3c77ccddp-1")
    assert exchange_position(b"alice") == float.fromhex("0x1.c0369ee68a402p-2")
    assert RENDEZVOUS.order(b"alice", servers) == (
        "ex3.example.com",
        "ex2.example.com",
        "ex5.example.com",
        "ex4.example.com",
        "ex1.example.com",
    )
    assert EXCHANGE.order(b"alice", servers) == (
        "ex3.example.com",
        "ex2.example.com",
        "ex5.example.com",
        "ex4.example.com",
        "ex1.example.com",
    )
    assert choose(RENDEZVOUS, sid(1000), servers) == "ex4.example.com"
    assert choose(EXCHANGE, sid(1000), servers) == "ex1.example.com"


def test_rendezvous_weight_is_the_documented_blake2b_construction() -> None:
    """The rendezvous order is by descending blake2b(len, lowercased name, token)."""
    servers = ["EX1.example.com", "ex2.example.com", "Ex3.Example.com", "ex4"]
    for token in [*random_tokens(50, seed=3), b""]:

        def weight(name: str, token: bytes = token) -> int:
            encoded = name.lower().encode()
            digest = hashlib.blake2b(
                len(encoded).to_bytes(4, "big") + encoded + token,
                digest_size=8,
                person=b"feproxy-hrw-v1",
            ).digest()
            return int.from_bytes(digest, "big")

        expected = tuple(sorted(servers, key=lambda s: (-weight(s), s.lower())))
        assert RENDEZVOUS.order(token, servers) == expected


# ---------------------------------------------------------------------------
# Balance.


@BOTH
@pytest.mark.parametrize("n", [3, 4, 5, 6, 7, 8])
@pytest.mark.parametrize("kind", ["random", "sequential_sids"])
def test_users_spread_evenly_over_the_servers(policy: HashPolicy, n: int, kind: str) -> None:
    """Each server gets close to 1/n of the users; chi-square under its 0.1% point."""
    tokens = random_tokens(USERS, seed=n) if kind == "random" else sequential_sids(USERS)
    servers = servers_named(n)
    counts = Counter(assignment(policy, tokens, servers))
    assert set(counts) == set(servers)
    for server in servers:
        assert abs(counts[server] / USERS - 1 / n) < 0.015, (server, counts)
    assert chi_square(counts, servers) < CHI2_999[n - 1], counts


# ---------------------------------------------------------------------------
# Rendezvous: minimal movement, even fallback.


@pytest.mark.parametrize("n", [2, 3, 4, 5, 7])
def test_rendezvous_adding_a_replica_moves_about_1_over_n_plus_1_to_it(n: int) -> None:
    """Adding a server moves ~1/(n+1) of the users, every one of them to it."""
    tokens = random_tokens(USERS, seed=100 + n)
    servers = servers_named(n)
    grown = [*servers, "new.example.com"]
    before = assignment(RENDEZVOUS, tokens, servers)
    after = assignment(RENDEZVOUS, tokens, grown)
    moved = [a for b, a in zip(before, after, strict=True) if a != b]
    assert set(moved) == {"new.example.com"}
    assert abs(len(moved) / USERS - 1 / (n + 1)) < 0.015


@pytest.mark.parametrize("n", [3, 4, 5, 8])
def test_rendezvous_removing_a_replica_moves_only_its_users(n: int) -> None:
    """Removing a server moves exactly its users, spread evenly over the others."""
    tokens = random_tokens(USERS, seed=200 + n)
    servers = servers_named(n)
    gone = servers[1]
    before = assignment(RENDEZVOUS, tokens, servers)
    after = assignment(RENDEZVOUS, tokens, [s for s in servers if s != gone])
    for b, a in zip(before, after, strict=True):
        assert (a == b) == (b != gone)
    displaced = Counter(a for b, a in zip(before, after, strict=True) if b == gone)
    total = sum(displaced.values())
    assert set(displaced) == set(servers) - {gone}
    for count in displaced.values():
        assert abs(count / total - 1 / (n - 1)) < 0.05, displaced


@pytest.mark.parametrize("n", [3, 5, 8])
def test_rendezvous_unavailable_servers_users_spread_over_all_survivors(n: int) -> None:
    """With one server marked, its users go to every survivor, ~1/(n-1) each."""
    tokens = random_tokens(USERS, seed=300 + n)
    servers = servers_named(n)
    down = servers[-1]
    before = assignment(RENDEZVOUS, tokens, servers)
    after = assignment(RENDEZVOUS, tokens, servers, frozenset({down.upper()}))
    assert down not in after
    for b, a in zip(before, after, strict=True):
        assert (a == b) == (b != down)
    displaced = Counter(a for b, a in zip(before, after, strict=True) if b == down)
    total = sum(displaced.values())
    assert set(displaced) == set(servers) - {down}
    for count in displaced.values():
        assert abs(count / total - 1 / (n - 1)) < 0.05, displaced


# ---------------------------------------------------------------------------
# Exchange: what moves, and where a failed server's users go.


def exchange_moved_exactly(before: Sequence[str], after: Sequence[str]) -> Fraction:
    """The exact fraction of the token space whose exchange server changes."""
    old = sorted(before, key=str.lower)
    new = sorted(after, key=str.lower)
    cuts = sorted(
        {Fraction(i, len(old)) for i in range(len(old) + 1)}
        | {Fraction(j, len(new)) for j in range(len(new) + 1)}
    )
    moved = Fraction(0)
    for low, high in itertools.pairwise(cuts):
        if old[int(low * len(old))] != new[int(low * len(new))]:
            moved += high - low
    return moved


@pytest.mark.parametrize("n", [3, 4, 5, 7])
@pytest.mark.parametrize("where", ["first", "middle", "last"])
def test_exchange_adding_a_replica_moves_far_more_than_1_over_n_plus_1(n: int, where: str) -> None:
    """Exchange moves 1/2 of the users when the new name sorts first or last.

    Rendezvous moves 1/(n+1).  A name sorting in the middle moves less than
    half but still well over 1/(n+1) (only at n=2 is it exactly 1/3), and
    users also move between the old servers, not only to the new one.  This
    is why rendezvous is the default.
    """
    servers = servers_named(n)
    new = {"first": "aaa", "middle": "ex2a", "last": "zz"}[where] + ".example.com"
    exact = exchange_moved_exactly(servers, [*servers, new])
    if where != "middle":
        assert exact == Fraction(1, 2)
    assert exact > Fraction(6, 5) / (n + 1)

    tokens = random_tokens(USERS, seed=400 + n)
    before = assignment(EXCHANGE, tokens, servers)
    after = assignment(EXCHANGE, tokens, [new, *servers])
    assert abs(moved_fraction(before, after) - exact) < 0.015
    between_old = sum(b != a != new for b, a in zip(before, after, strict=True))
    assert between_old / USERS > 0.05


@pytest.mark.parametrize("n", [3, 4, 5, 8])
@pytest.mark.parametrize("k", [0, -1])
def test_exchange_removing_a_replica_moves_other_users_too(n: int, k: int) -> None:
    """Removing the first or last server moves half of all users, not just 1/n."""
    servers = servers_named(n)
    gone = servers[k]
    rest = [s for s in servers if s != gone]
    assert exchange_moved_exactly(servers, rest) == Fraction(1, 2)
    tokens = random_tokens(USERS, seed=500 + n)
    before = assignment(EXCHANGE, tokens, servers)
    after = assignment(EXCHANGE, tokens, rest)
    bystanders_moved = sum(b not in (gone, a) for b, a in zip(before, after, strict=True))
    assert abs(bystanders_moved / USERS - (1 / 2 - 1 / n)) < 0.015


@pytest.mark.parametrize("n", [3, 4, 5, 8])
def test_exchange_unavailable_servers_users_spread_over_all_survivors(n: int) -> None:
    """A failed server's users spread over every survivor (~1/(n-1) each), not
    only its name-order neighbours; nobody else moves."""
    tokens = random_tokens(USERS, seed=600 + n)
    servers = servers_named(n)
    before = assignment(EXCHANGE, tokens, servers)
    for down in (servers[0], servers[n // 2], servers[-1]):
        after = assignment(EXCHANGE, tokens, servers, frozenset({down}))
        for b, a in zip(before, after, strict=True):
            assert (a == b) == (b != down)
        displaced = Counter(a for b, a in zip(before, after, strict=True) if b == down)
        total = sum(displaced.values())
        assert set(displaced) == set(servers) - {down}
        for count in displaced.values():
            assert abs(count / total - 1 / (n - 1)) < 0.06, displaced


# ---------------------------------------------------------------------------
# choose() edge cases.


@BOTH
def test_choose_skips_unavailable_servers_case_insensitively(
    policy: HashPolicy,
) -> None:
    """choose() returns the next server in order when earlier ones are marked."""
    servers = servers_named(4)
    for token in random_tokens(50, seed=9):
        ordered = policy.order(token, servers)
        assert choose(policy, token, servers) == ordered[0]
        assert choose(policy, token, servers, {ordered[0].upper()}) == ordered[1]
        marks = [ordered[0], ordered[1].title()]
        assert choose(policy, token, servers, marks) == ordered[2]


@BOTH
def test_choose_returns_none_when_all_are_unavailable(policy: HashPolicy) -> None:
    """Every server marked (in any spelling) leaves nothing to choose."""
    servers = servers_named(3)
    marks = {s.upper() for s in servers}
    assert choose(policy, b"alice", servers, marks) is None


@BOTH
def test_an_empty_list_gives_none(policy: HashPolicy) -> None:
    """No replicas: order() is empty and choose() returns None."""
    assert policy.order(b"alice", []) == ()
    assert choose(policy, b"alice", []) is None
    assert choose(policy, b"alice", (), {"ex1"}) is None


@BOTH
def test_duplicates_differing_in_case_count_once(policy: HashPolicy) -> None:
    """EX1 and ex1 are one server, returned in a spelling that was given."""
    servers = ["ex1.example.com", "EX1.EXAMPLE.COM", "ex2.example.com"]
    for token in random_tokens(20, seed=11):
        ordered = policy.order(token, servers)
        assert len(ordered) == 2
        assert {s.lower() for s in ordered} == {"ex1.example.com", "ex2.example.com"}
        assert set(ordered) <= set(servers)
        assert choose(policy, token, servers) == ordered[0]
        assert choose(policy, token, servers, {"Ex1.Example.Com"}) == "ex2.example.com"


@BOTH
def test_choose_accepts_a_bare_container_of_marks(policy: HashPolicy) -> None:
    """A container that only answers `in` is asked for the name as given and lowered."""

    class Marks:
        def __init__(self, names: set[str]) -> None:
            self.names = names

        def __contains__(self, item: object) -> bool:
            return item in self.names

    servers = ["EX1.example.com", "ex2.example.com"]
    for token in random_tokens(20, seed=13):
        assert choose(policy, token, servers, Marks({"ex1.example.com"})) == ("ex2.example.com")
        assert choose(policy, token, servers, Marks(set())) == policy.order(token, servers)[0]


def test_a_lone_string_is_refused_for_servers_or_marks() -> None:
    """A str where a list of names is expected is a TypeError, not a list of letters."""
    with pytest.raises(TypeError):
        choose(RENDEZVOUS, b"alice", "ex1.example.com")
    with pytest.raises(TypeError):
        EXCHANGE.order(b"alice", "ex1.example.com")
    with pytest.raises(TypeError):
        choose(RENDEZVOUS, b"alice", ["ex1.example.com"], "ex1.example.com")


def test_choose_works_with_any_policy_through_order() -> None:
    """choose() uses order() of a policy it does not know."""

    class ByName:
        name = "by-name"

        def order(self, _token: bytes, servers: Sequence[str]) -> tuple[str, ...]:
            return tuple(sorted(servers))

    assert choose(ByName(), b"x", ["b", "a", "c"], {"A"}) == "b"
    assert choose(ByName(), b"x", ["a"], {"A"}) is None


# ---------------------------------------------------------------------------
# Policy registry.


def test_policies_are_registered_under_their_names() -> None:
    """POLICIES maps each configuration name to its policy; rendezvous is default."""
    assert set(POLICIES) == {"rendezvous", "exchange"}
    for name, policy in POLICIES.items():
        assert policy.name == name
        assert policy_named(name) is policy
    assert isinstance(POLICIES["rendezvous"], RendezvousPolicy)
    assert isinstance(POLICIES["exchange"], ExchangePolicy)
    assert DEFAULT_POLICY == "rendezvous"
    assert policy_named(" Exchange ") is EXCHANGE


def test_policy_named_error_names_the_known_policies() -> None:
    """An unknown name is a ValueError (not a KeyError) listing the known ones."""
    with pytest.raises(ValueError, match="consistent") as info:
        policy_named("consistent")
    assert not isinstance(info.value, KeyError)
    message = str(info.value)
    assert "exchange" in message
    assert "rendezvous" in message
