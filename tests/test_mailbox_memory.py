"""Mailbox routing, authentication and caches, in memory (fake directory, Clock)."""

from __future__ import annotations

import base64
from dataclasses import replace

from twisted.internet import error as ierror

from frontend.config import parse_config
from tests.fakes import (
    MAILBOX_CONFIG,
    MB2,
    FakeBackends,
    FakeDirectory,
    FakeResponse,
    FrontEnd,
    Sent,
    fake_directory,
    front_end,
)


def basic(login: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{login}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def mailbox_fe(
    directory: FakeDirectory | None = None,
    backends: FakeBackends | None = None,
    **frontend: object,
) -> tuple[FrontEnd, FakeDirectory]:
    directory = directory or fake_directory()
    data = {**MAILBOX_CONFIG, "frontend": {**MAILBOX_CONFIG["frontend"], **frontend}}
    return front_end(backends, parse_config(data), directory), directory


def test_implicit_logon_goes_to_users_server_with_alias_in_path() -> None:
    """/exchange/ for alice goes to ex1 as /exchange/alice/."""
    fe, _ = mailbox_fe()
    response, _ = fe.request(
        "GET", "http://fe/exchange/?Cmd=contents", headers=basic("alice", "alice-pw")
    )
    assert response.code == 200
    sent = fe.backends.sent[0]
    assert (sent.server, sent.target) == (
        "ex1.example.com",
        b"/exchange/alice/?Cmd=contents",
    )


def test_explicit_logon_uses_vdir_domain_and_keeps_path() -> None:
    """/exchange/bob/Inbox goes to bob's server with the path unchanged."""
    fe, directory = mailbox_fe()
    fe.request("PROPFIND", "http://fe/exchange/bob/Inbox/", headers=basic("alice", "alice-pw"))
    sent = fe.backends.sent[0]
    assert (sent.server, sent.target) == ("ex2.example.com", b"/exchange/bob/Inbox/")
    assert ("find_mailbox", "bob@example.com") in directory.calls


def test_explicit_logon_with_domain_overrides_vdir_domain() -> None:
    """/exchange/a.archer@example.com/ finds alice by a secondary address."""
    fe, directory = mailbox_fe()
    fe.request(
        "GET",
        "http://fe/exchange/A.Archer@Example.com/",
        headers=basic("bob", "bob-pw"),
    )
    assert fe.backends.sent[0].server == "ex1.example.com"
    assert ("find_mailbox", "a.archer@example.com") in directory.calls


def test_unknown_mailbox_is_404_user_without_mailbox_is_404() -> None:
    """No such address -> 404; dave (no mailbox) logging on implicitly -> 404."""
    fe, _ = mailbox_fe()
    r1, b1 = fe.request("GET", "http://fe/exchange/nobody/", headers=basic("alice", "alice-pw"))
    r2, b2 = fe.request("GET", "http://fe/exchange/", headers=basic("dave", "dave-pw"))
    assert (r1.code, r2.code) == (404, 404)
    assert b1 == b"404 No such mailbox.\n"
    assert b"cn=" not in b2
    assert fe.backends.sent == []


def test_http_disabled_is_403_for_user_and_for_mailbox() -> None:
    """carol has HTTP disabled: her logon and others opening her mailbox get 403."""
    fe, _ = mailbox_fe()
    r1, _ = fe.request("GET", "http://fe/exchange/", headers=basic("carol", "carol-pw"))
    r2, _ = fe.request("GET", "http://fe/exchange/carol/", headers=basic("alice", "alice-pw"))
    assert (r1.code, r2.code) == (403, 403)
    assert fe.backends.sent == []


def test_missing_or_wrong_credentials_get_401_with_basic_challenge() -> None:
    """No credentials, a wrong password or an unknown user -> 401 + WWW-Authenticate."""
    fe, _ = mailbox_fe()
    for headers in (
        {},
        basic("alice", "wrong"),
        basic("mallory", "x"),
        {"Authorization": "Negotiate abc"},
    ):
        response, body = fe.request("GET", "http://fe/exchange/", headers=headers)
        assert response.code == 401, headers
        assert response.headers.getRawHeaders(b"www-authenticate") == [b'Basic realm="example.com"']
        assert body.count(b"\n") == 1
    assert fe.backends.sent == []


def test_empty_password_is_refused_without_a_bind() -> None:
    """An empty password is 401 before the directory is asked to bind."""
    fe, directory = mailbox_fe()
    response, _ = fe.request("GET", "http://fe/exchange/", headers=basic("alice", ""))
    assert response.code == 401
    assert not [c for c in directory.calls if c[0] == "check_password"]


def test_successful_credentials_are_cached_and_wrong_ones_never_match() -> None:
    """A second request with the same credentials asks nothing of the directory;
    a different password is checked again and refused."""
    fe, directory = mailbox_fe()
    fe.request("GET", "http://fe/exchange/", headers=basic("alice", "alice-pw"))
    n = len(directory.calls)
    response, _ = fe.request("GET", "http://fe/exchange/", headers=basic("alice", "alice-pw"))
    assert response.code == 200
    assert len(directory.calls) == n
    response, _ = fe.request("GET", "http://fe/exchange/", headers=basic("alice", "other"))
    assert response.code == 401
    assert directory.calls[-1][0] == "check_password"


def test_password_is_not_kept_in_the_clear() -> None:
    """The credential cache holds digests, not passwords."""
    fe, _ = mailbox_fe()
    fe.request("GET", "http://fe/exchange/", headers=basic("alice", "alice-pw"))
    auth = fe.runtime.auth
    assert auth is not None
    stored = list(auth._verified.values())
    assert stored
    assert all(b"alice-pw" not in v for v in stored)


def test_lookups_expire_after_ttl_on_the_injected_clock() -> None:
    """Cached lookups and credentials are used for cache_ttl seconds, then fetched again."""
    fe, directory = mailbox_fe(cache_ttl=600.0)
    fe.request("GET", "http://fe/exchange/bob/", headers=basic("alice", "alice-pw"))
    n = len(directory.calls)
    fe.clock.advance(599)
    fe.request("GET", "http://fe/exchange/bob/", headers=basic("alice", "alice-pw"))
    assert len(directory.calls) == n
    fe.clock.advance(2)
    fe.request("GET", "http://fe/exchange/bob/", headers=basic("alice", "alice-pw"))
    names = [c[0] for c in directory.calls[n:]]
    assert names == ["find_user", "check_password", "find_mailbox", "server_of_store"]


def test_directory_down_gives_503_unless_cached() -> None:
    """With the directory unreachable, cached users keep working and others get 503."""
    fe, directory = mailbox_fe()
    fe.request("GET", "http://fe/exchange/", headers=basic("alice", "alice-pw"))
    directory.down = True
    ok, _ = fe.request("GET", "http://fe/exchange/", headers=basic("alice", "alice-pw"))
    down, body = fe.request("GET", "http://fe/exchange/", headers=basic("bob", "bob-pw"))
    assert ok.code == 200
    assert down.code == 503
    assert body == b"503 The directory is unavailable; try again later.\n"


def test_refused_mailbox_server_triggers_one_fresh_lookup_and_follows_a_move() -> None:
    """ex2 refuses; the directory now says bob lives on MB1 (ex1): the request goes there."""
    directory = fake_directory()

    def answer(s: Sent) -> FakeResponse | BaseException:
        if s.server == "ex2.example.com":
            return ierror.ConnectionRefusedError()
        return FakeResponse(body=b"moved")

    fe, _ = mailbox_fe(directory, FakeBackends(answer))
    fe.request("GET", "http://fe/exchange/", headers=basic("bob", "bob-pw"))  # fills caches
    directory.users["bob"] = replace(directory.users["bob"], home_mdb="cn=MB1,cn=stores")
    response, body = fe.request("GET", "http://fe/exchange/", headers=basic("bob", "bob-pw"))
    assert (response.code, body) == (200, b"moved")
    assert [s.server for s in fe.backends.sent[-2:]] == [
        "ex2.example.com",
        "ex1.example.com",
    ]
    assert "ex2.example.com" not in fe.marks


def test_refused_mailbox_server_that_did_not_move_is_502_and_not_marked() -> None:
    """A user's one mailbox server is never marked: the next request tries it again."""
    fe, directory = mailbox_fe(backends=FakeBackends(lambda _: ierror.ConnectionRefusedError()))
    r1, _ = fe.request("GET", "http://fe/exchange/bob/", headers=basic("alice", "alice-pw"))
    r2, _ = fe.request("GET", "http://fe/exchange/bob/", headers=basic("alice", "alice-pw"))
    assert (r1.code, r2.code) == (502, 502)
    assert [s.server for s in fe.backends.sent] == ["ex2.example.com"] * 2
    assert fe.marks.snapshot() == {}
    assert [c for c in directory.calls if c == ("server_of_store", MB2)]


def test_without_authentication_only_explicit_logon_routes() -> None:
    """authenticate = false: /exchange/bob/ works without credentials, /exchange/ is 404."""
    fe, _ = mailbox_fe(authenticate=False)
    r1, _ = fe.request("GET", "http://fe/exchange/bob/")
    r2, body = fe.request("GET", "http://fe/exchange/")
    assert r1.code == 200
    assert fe.backends.sent[0].server == "ex2.example.com"
    assert r2.code == 404
    assert b"/exchange/<name>/" in body


def test_static_vdir_needs_no_credentials() -> None:
    """Static content (/exchweb) is served without authentication, as Exchange does."""
    fe, directory = mailbox_fe()
    response, _ = fe.request("GET", "http://fe/exchweb/img/logo.gif")
    assert response.code == 200
    assert directory.calls == []
