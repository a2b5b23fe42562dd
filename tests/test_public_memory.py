"""Public-folder routing in memory: home public store, hashing, referrals, marks."""

from __future__ import annotations

from dataclasses import replace

from twisted.internet import defer
from twisted.internet import error as ierror
from twisted.web.http_headers import Headers

from frontend.config import parse_config
from frontend.errors import GatewayTimeout
from frontend.routing.hashing import POLICIES
from frontend.wire.interfaces import Exchange, OutgoingRequest
from tests.fakes import (
    APPS,
    MAILBOX_CONFIG,
    Answer,
    FakeBackends,
    FakeDirectory,
    FakeResponse,
    FakeUser,
    FrontEnd,
    Sent,
    fake_directory,
    front_end,
    header_pairs,
)
from tests.test_mailbox_memory import basic

HOLDERS = {"/apps/projects": set(APPS), "/apps/archive": {"ex3.example.com"}}


def farm_like(s: Sent) -> FakeResponse | BaseException:
    """A back end that holds what HOLDERS says and refers everything else."""
    path = s.target.split(b"?")[0].decode().lower()
    for folder, holders in HOLDERS.items():
        if path.startswith(folder):
            if s.server in holders:
                return FakeResponse(body=f"{folder} from {s.server}".encode())
            h = Headers({b"X-Replica-Servers": [", ".join(sorted(holders)).encode()]})
            return FakeResponse(
                code=421, phrase=b"Misdirected Request", headers=header_pairs(h), body=b"referral"
            )
    return FakeResponse(body=f"from {s.server}".encode())


def user(n: int) -> FakeUser:
    return FakeUser(
        f"cn=u{n}",
        f"u{n}",
        f"u{n}@example.com",
        f"u{n}",
        "cn=MB1,cn=stores",
        token=n.to_bytes(16, "big"),
        password="pw",
    )


def public_fe(
    answer: Answer = farm_like, users: int = 0, **frontend: object
) -> tuple[FrontEnd, FakeDirectory]:
    directory = fake_directory()
    for n in range(users):
        u = user(n)
        directory.users[u.login] = u
    data = {**MAILBOX_CONFIG, "frontend": {**MAILBOX_CONFIG["frontend"], **frontend}}
    return front_end(FakeBackends(answer), parse_config(data), directory), directory


def servers_of(fe: FrontEnd) -> list[str]:
    return [s.server for s in fe.backends.sent]


def first_user_on(server: str, listed: tuple[str, ...] = APPS, policy: str = "rendezvous") -> int:
    return next(
        n for n in range(1000) if POLICIES[policy].order(user(n).token, listed)[0] == server
    )


def test_default_tree_goes_to_users_home_public_server() -> None:
    """/public/ goes to the server of the public store tied to the user's mailbox store."""
    fe, _ = public_fe()
    fe.request("GET", "http://fe/public/Announcements/", headers=basic("bob", "bob-pw"))
    fe.request("GET", "http://fe/public/Announcements/", headers=basic("alice", "alice-pw"))
    assert servers_of(fe) == ["ex2.example.com", "ex1.example.com"]


def test_default_tree_falls_back_to_another_replica_when_home_is_marked() -> None:
    """With the home server marked, the request goes to another default-tree replica."""
    fe, _ = public_fe()
    fe.marks.mark("ex1.example.com")
    response, _ = fe.request(
        "GET", "http://fe/public/Announcements/", headers=basic("alice", "alice-pw")
    )
    assert response.code == 200
    assert servers_of(fe) == ["ex2.example.com"]


def test_general_tree_user_lands_on_hash_choice_every_time() -> None:
    """Each user goes to the first server of the policy's order, on every request."""
    fe, _ = public_fe(users=30)
    for n in range(30):
        for _ in range(2):
            fe.request("GET", "http://fe/apps/Projects/", headers=basic(f"u{n}", "pw"))
        expected = POLICIES["rendezvous"].order(user(n).token, APPS)[0]
        assert servers_of(fe)[-2:] == [expected, expected]
    assert len(set(servers_of(fe))) == 3


def test_exchange_policy_is_used_when_configured() -> None:
    """hash_policy = "exchange" routes by equal ranges over the sorted list."""
    fe, _ = public_fe(users=20, hash_policy="exchange")
    for n in range(20):
        fe.request("GET", "http://fe/apps/Projects/", headers=basic(f"u{n}", "pw"))
        assert servers_of(fe)[-1] == POLICIES["exchange"].order(user(n).token, APPS)[0]


def test_referral_is_followed_with_the_body_and_never_shown() -> None:
    """A 421 referral is followed to the listed replica with the same request and body."""
    n = first_user_on("ex2.example.com")
    fe, _ = public_fe(users=n + 1)
    response, body = fe.request(
        "PUT",
        "http://fe/apps/Archive/note.eml",
        data=b"note body",
        headers=basic(f"u{n}", "pw"),
    )
    assert (response.code, body) == (200, b"/apps/archive from ex3.example.com")
    first, second = fe.backends.sent
    assert (first.server, second.server) == ("ex2.example.com", "ex3.example.com")
    assert second.body == b"note body"
    assert second.method == b"PUT"
    assert second.target == b"/apps/Archive/note.eml"


def test_referral_before_the_body_sends_it_whole_and_uncopied_to_the_replica() -> None:
    """A replica that refers on the head (before asking for the body) never gets
    the body; the listed replica gets it, straight from the client."""
    n = first_user_on("ex2.example.com")
    fe, _ = public_fe(users=n + 1)

    def refer_on_the_head(s: Sent) -> FakeResponse | None:
        answer = farm_like(s)
        if s.server == "ex2.example.com" and isinstance(answer, FakeResponse):
            return answer
        return None

    fe.backends.early = refer_on_the_head
    response, body = fe.request(
        "PUT", "http://fe/apps/Archive/note.eml", data=b"note body", headers=basic(f"u{n}", "pw")
    )
    assert (response.code, body) == (200, b"/apps/archive from ex3.example.com")
    first, second = fe.backends.sent
    assert first.expect_continue
    assert not first.body_read
    assert second.body == b"note body"


def test_a_listed_replica_that_takes_the_body_and_refers_again_is_502() -> None:
    """After a referral the body goes on uncopied: a listed replica that takes
    it and refers once more cannot be followed (502, never the referral)."""
    n = first_user_on("ex2.example.com")

    def always_refer(s: Sent) -> FakeResponse:
        onward = b"ex4.example.com" if s.server == "ex2.example.com" else b"ex3.example.com"
        return FakeResponse(code=421, headers=[(b"X-Replica-Servers", onward)])

    fe, _ = public_fe(always_refer, users=n + 1)
    fe.backends.early = lambda s: always_refer(s) if s.server == "ex2.example.com" else None
    response, body = fe.request(
        "PUT", "http://fe/apps/Archive/note.eml", data=b"note body", headers=basic(f"u{n}", "pw")
    )
    assert response.code == 502
    assert b"referred the request in a loop" in body
    assert [s.server for s in fe.backends.sent] == ["ex2.example.com", "ex4.example.com"]


def test_referral_list_is_cached_for_the_folder_and_below() -> None:
    """After one referral, requests for that folder go straight to a listed replica."""
    n = first_user_on("ex2.example.com")
    fe, _ = public_fe(users=n + 1)
    fe.request("GET", "http://fe/apps/Archive/", headers=basic(f"u{n}", "pw"))
    fe.backends.sent.clear()
    fe.request("GET", "http://fe/apps/Archive/", headers=basic(f"u{n}", "pw"))
    fe.request("GET", "http://fe/apps/archive/2003/minutes.eml", headers=basic(f"u{n}", "pw"))
    assert servers_of(fe) == ["ex3.example.com", "ex3.example.com"]
    fe.clock.advance(601)
    fe.backends.sent.clear()
    fe.request("GET", "http://fe/apps/Archive/", headers=basic(f"u{n}", "pw"))
    assert servers_of(fe) == ["ex2.example.com", "ex3.example.com"]


def test_referral_back_to_a_tried_server_is_502() -> None:
    """A referral naming only servers already tried ends in 502 with a clear reason."""

    def loop(s: Sent) -> FakeResponse | BaseException:
        h = Headers({b"X-Replica-Servers": [s.server.encode()]})
        return FakeResponse(code=421, headers=header_pairs(h))

    fe, _ = public_fe(loop, users=1)
    response, body = fe.request("GET", "http://fe/apps/Projects/", headers=basic("u0", "pw"))
    assert response.code == 502
    assert body == b"502 The back-end servers referred the request in a loop.\n"
    assert len(fe.backends.sent) == 1


def test_third_referral_in_a_row_is_502() -> None:
    """Servers that keep referring onwards are given up after two referrals."""
    order = ["ex2.example.com", "ex3.example.com", "ex4.example.com", "ex1.example.com"]

    def onwards(s: Sent) -> FakeResponse | BaseException:
        nxt = order[(order.index(s.server) + 1) % len(order)]
        h = Headers({b"X-Replica-Servers": [nxt.encode()]})
        return FakeResponse(code=421, headers=header_pairs(h))

    n = first_user_on("ex2.example.com")
    fe, _ = public_fe(onwards, users=n + 1)
    response, _ = fe.request("GET", "http://fe/apps/Projects/", headers=basic(f"u{n}", "pw"))
    assert response.code == 502
    assert servers_of(fe) == order[:3]


def test_unreachable_replica_is_marked_and_user_moves_to_next_in_hash_order() -> None:
    """A refused replica is marked for unavailable_for seconds; its users go to
    their next server; after the mark expires it is tried again."""
    down = {"ex3.example.com"}

    def answer(s: Sent) -> FakeResponse | BaseException:
        return ierror.ConnectionRefusedError() if s.server in down else farm_like(s)

    n = first_user_on("ex3.example.com")
    fe, _ = public_fe(answer, users=n + 1)
    order = POLICIES["rendezvous"].order(user(n).token, APPS)
    response, _ = fe.request("GET", "http://fe/apps/Projects/", headers=basic(f"u{n}", "pw"))
    assert response.code == 200
    assert servers_of(fe) == [order[0], order[1]]
    assert "ex3.example.com" in fe.marks
    fe.backends.sent.clear()
    fe.request("GET", "http://fe/apps/Projects/", headers=basic(f"u{n}", "pw"))
    assert servers_of(fe) == [order[1]]
    fe.clock.advance(601)
    down.clear()
    fe.backends.sent.clear()
    fe.request("GET", "http://fe/apps/Projects/", headers=basic(f"u{n}", "pw"))
    assert servers_of(fe) == [order[0]]


def test_no_replica_left_is_503() -> None:
    """Every replica refusing -> 503, each marked."""
    fe, _ = public_fe(lambda _: ierror.ConnectionRefusedError(), users=1)
    response, body = fe.request("GET", "http://fe/apps/Projects/", headers=basic("u0", "pw"))
    assert response.code == 503
    assert body == b"503 No back-end server is available for this request.\n"
    assert set(fe.marks.snapshot()) == set(APPS)


def test_post_that_may_have_been_processed_is_never_replayed() -> None:
    """A response timeout after sending a POST is a 504 and no other replica gets it."""
    fe, _ = public_fe(lambda _: GatewayTimeout(), users=1)
    response, _ = fe.request(
        "POST", "http://fe/apps/Projects/", data=b"x", headers=basic("u0", "pw")
    )
    assert response.code == 504
    assert len(fe.backends.sent) == 1
    assert fe.marks.snapshot() == {}


def test_without_authentication_public_requests_go_to_first_server_by_name() -> None:
    """authenticate = false: no balancing, the first available replica in name order."""
    fe, _ = public_fe(authenticate=False)
    fe.request("GET", "http://fe/apps/Projects/")
    fe.marks.mark("ex2.example.com")
    fe.request("GET", "http://fe/apps/Projects/")
    assert servers_of(fe) == ["ex2.example.com", "ex3.example.com"]


def test_tree_replica_list_is_cached_until_ttl() -> None:
    """The tree -> replica list lookup is cached for cache_ttl seconds."""
    fe, directory = public_fe(users=1)
    for _ in range(3):
        fe.request("GET", "http://fe/apps/Projects/", headers=basic("u0", "pw"))
    assert [c for c in directory.calls if c[0] == "tree_replicas"] == [("tree_replicas", "Apps")]
    directory.trees["Apps"] = ("ex4.example.com",)
    fe.clock.advance(601)
    fe.request("GET", "http://fe/apps/Projects/", headers=basic("u0", "pw"))
    assert servers_of(fe)[-1] == "ex4.example.com"


def test_user_without_token_is_hashed_by_login() -> None:
    """A user entry without objectGUID/objectSid still lands on one stable server."""
    fe, directory = public_fe()
    directory.users["dave"] = replace(directory.users["dave"], token=b"")
    for _ in range(2):
        fe.request("GET", "http://fe/apps/Projects/", headers=basic("dave", "dave-pw"))
    expected = POLICIES["rendezvous"].order(b"dave", APPS)[0]
    assert servers_of(fe) == [expected, expected]


def test_client_leaving_during_connect_marks_no_server() -> None:
    """A connect abandoned because the client went away says nothing about the
    back end: it is not marked unavailable."""
    pending: list[defer.Deferred[Exchange]] = []

    class Hanging(FakeBackends):
        def send(self, _server: str, _request: OutgoingRequest) -> defer.Deferred[Exchange]:
            d: defer.Deferred[Exchange] = defer.Deferred(
                lambda d: d.errback(ierror.ConnectingCancelledError(None))
            )
            pending.append(d)
            return d

    directory = fake_directory()
    u = user(0)
    directory.users[u.login] = u
    fe = front_end(Hanging(), parse_config(MAILBOX_CONFIG), directory)
    auth = Headers({k: [v] for k, v in basic("u0", "pw").items()})
    d = fe.treq.get("http://fe/apps/Projects/", headers=auth)
    fe.treq.flush()
    assert len(pending) == 1
    d.addErrback(lambda _: None)
    d.cancel()
    fe.treq.flush()
    assert pending[0].called
    assert fe.marks.snapshot() == {}
