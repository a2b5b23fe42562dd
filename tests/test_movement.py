"""frontend.routing.movement: who moves on a replica change, with plain values,
and the same figures as ``feproxy loadtest offline`` for the same inputs."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from frontend.loadtest.offline import OfflinePlan, simulate, synthetic_tokens
from frontend.loadtest.scenario import plan_change, server_name, server_names
from frontend.routing.decisions import public_order, user_token
from frontend.routing.hashing import POLICIES, HashPolicy, policy_named
from frontend.routing.movement import MoveSummary, Placement, first_server, placements
from tests.fakes import FakeUser

SERVERS = st.lists(
    st.sampled_from(["ex1.example.com", "EX2.example.com", "ex3.example.com", "pf04", "a"]),
    min_size=1,
    max_size=5,
)
TOKENS = st.binary(min_size=0, max_size=24)
POLICY = st.sampled_from(sorted(POLICIES.values(), key=lambda p: p.name))


@given(policy=POLICY, token=TOKENS, servers=SERVERS, home=st.sampled_from([None, "ex9"]))
def test_first_server_is_the_first_of_the_front_ends_public_order(
    policy: HashPolicy, token: bytes, servers: list[str], home: str | None
) -> None:
    """first_server() is public_order()[0], with and without a home server."""
    assert (
        first_server(policy, token, servers, home=home)
        == (public_order(policy, token, servers, home=home)[0])
    )


@given(policy=POLICY, servers=SERVERS)
def test_without_a_token_the_first_server_is_the_first_in_name_order(
    policy: HashPolicy, servers: list[str]
) -> None:
    """No token (no authentication): the front end's unbalanced order, name order."""
    assert first_server(policy, None, servers) == public_order(policy, None, servers)[0]


def test_no_replica_and_no_home_gives_no_server() -> None:
    """An empty replica list places nobody, with or without a token."""
    policy = policy_named("rendezvous")
    assert first_server(policy, b"t", ()) is None
    assert first_server(policy, None, ()) is None


@given(policy=POLICY, tokens=st.lists(st.one_of(st.none(), TOKENS), max_size=8))
def test_placements_place_each_token_before_and_after_in_order(
    policy: HashPolicy, tokens: list[bytes | None]
) -> None:
    """placements() is first_server() over both lists, token by token."""
    before, after = ("ex1", "ex2"), ("ex1", "ex2", "ex3")
    expected = [
        Placement(first_server(policy, t, before), first_server(policy, t, after)) for t in tokens
    ]
    assert placements(policy, tokens, before, after) == expected
    with_homes = placements(policy, tokens, before, after, home_before="h1", home_after="h2")
    assert with_homes == [Placement("h1", "h2")] * len(tokens)


def test_a_placement_moves_only_when_the_server_changes_whatever_its_case() -> None:
    """Host names compare case-insensitively; None is a server of its own."""
    assert not Placement("EX1.example.com", "ex1.example.com").moves
    assert Placement("ex1", "ex2").moves
    assert Placement(None, "ex2").moves
    assert not Placement(None, None).moves


def test_the_summary_counts_users_movers_pairs_and_servers() -> None:
    """MoveSummary: totals, moves by (from, to) most first, servers listed even when empty."""
    placed = [
        Placement("ex1", "ex1"),
        Placement("ex1", "ex3"),
        Placement("ex2", "ex3"),
        Placement("ex2", "ex3"),
        Placement(None, "ex2"),
    ]
    summary = MoveSummary.of(placed, ["ex1", "ex2", "ex3", "ex4"])
    assert summary.users == 5
    assert summary.moving == 4
    assert summary.moved_fraction == 0.8
    assert summary.moves == {("ex2", "ex3"): 2, ("", "ex2"): 1, ("ex1", "ex3"): 1}
    assert list(summary.moves) == [("ex2", "ex3"), ("", "ex2"), ("ex1", "ex3")]
    assert summary.before == {"": 1, "ex1": 2, "ex2": 2, "ex3": 0, "ex4": 0}
    assert summary.after == {"": 0, "ex1": 1, "ex2": 1, "ex3": 3, "ex4": 0}
    assert MoveSummary.of(Counter(placed), ["ex1", "ex2", "ex3", "ex4"]) == summary
    assert MoveSummary.of([]).moved_fraction == 0.0


def test_a_users_token_is_the_guid_else_the_lowercased_login() -> None:
    """user_token(): what the router hashes for a user."""
    with_guid = FakeUser("cn=a", "Alice", None, None, None, token=b"\x01\x02")
    without = FakeUser("cn=b", "Bob", None, None, None, token=b"")
    assert user_token(with_guid) == b"\x01\x02"
    assert user_token(without) == b"bob"


@pytest.mark.parametrize("policy", ["rendezvous", "exchange"])
@pytest.mark.parametrize(("replicas", "kind"), [(3, "add"), (4, "add"), (5, "remove")])
def test_moved_fraction_equals_loadtest_offline_for_the_same_tokens(
    policy: str, replicas: int, kind: str
) -> None:
    """Plan's core over the load test's synthetic tokens, N -> N+1 replicas (or N -> N-1):
    the same movers, fraction and (from, to) counts as ``feproxy loadtest offline``."""
    users, seed = 20_000, 7
    offline = simulate(OfflinePlan(users, replicas, policy, kind, seed))
    change = plan_change(kind, server_names(replicas), spare=server_name(replicas + 1))
    tokens = [t for batch in synthetic_tokens(users, seed) for t in batch]
    placed = placements(policy_named(policy), tokens, change.before, change.after)
    summary = MoveSummary.of(placed, (*change.before, *change.after))

    movement = offline.movement
    assert movement is not None
    assert summary.users == movement.users == users
    assert summary.moving == movement.moved
    assert summary.moved_fraction == pytest.approx(movement.moved_fraction, abs=0)
    moved_from: Counter[str] = Counter()
    moved_to: Counter[str] = Counter()
    for (old, new), n in summary.moves.items():
        moved_from[old] += n
        moved_to[new] += n
    assert {k: v for k, v in movement.moved_from.items() if v} == dict(moved_from)
    assert {k: v for k, v in movement.moved_to.items() if v} == dict(moved_to)
    assert offline.after is not None
    assert {s.server: s.users for s in offline.after.servers if s.users} == {
        k: v for k, v in summary.after.items() if v
    }
    if policy == "rendezvous" and kind == "add":  # sanity: about 1/(n+1), all to the new one
        assert set(moved_to) == {change.server}
        assert summary.moved_fraction == pytest.approx(1 / (replicas + 1), abs=0.02)
