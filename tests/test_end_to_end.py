"""The whole path as a user runs it: `feproxy serve`, a real slapd, the stub farm."""

from __future__ import annotations

import base64
import http.client
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from frontend.loadtest.slapd import Slapd
from tests.support.configs import directory_table, farm_hosts, write_config
from tests.support.farm import Farm, free_port
from tests.support.serve import ServeProcess


def fe_config(path: Path, port: int, farm: Farm, slapd: Slapd, **frontend: object) -> Path:
    data = {
        "frontend": {
            "name": "fe1.example.com",
            "listen": [f"tcp:{port}:interface=127.0.0.1"],
            "backend_port": farm.port,
            "connect_timeout": 1.0,
            "response_timeout": 2.0,
            "realm": "example.com",
            **frontend,
        },
        "hosts": farm_hosts(farm),
        "directory": directory_table(slapd),
        "vdirs": [
            {"path": "/exchange", "kind": "mailbox", "smtp_domain": "example.com"},
            {"path": "/public", "kind": "public", "tree": "default"},
            {"path": "/apps", "kind": "public", "tree": "Apps"},
            {"path": "/exchweb", "kind": "static", "servers": ["ex1.example.com"]},
        ],
    }
    return write_config(path, data)


@dataclass(frozen=True)
class Stack:
    """``feproxy serve`` in front of the farm and slapd, listening on ``port``."""

    serve: ServeProcess
    port: int


@pytest.fixture(scope="module")
def stack(farm: Farm, slapd: Slapd, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    port = free_port()
    config = fe_config(tmp_path_factory.mktemp("e2e") / "fe.toml", port, farm, slapd)
    with ServeProcess.start(config, ("127.0.0.1", port)) as serve:
        yield Stack(serve, port)


def get(
    port: int,
    path: str,
    user: str | None = None,
    password: str | None = None,
    method: str = "GET",
    body: bytes | None = None,
) -> tuple[int, dict[str, str], bytes]:
    headers = {"Host": "mail.example.com"}
    if user is not None:
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        headers["Authorization"] = f"Basic {token}"
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=15)
    try:
        c.request(method, path, body=body, headers=headers)
        r = c.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        c.close()


def test_implicit_logon_reaches_users_mailbox_server_with_alias(
    stack: Stack, clean_farm: Farm
) -> None:
    """alice on /exchange/ lands on ex1 as /exchange/alice/."""
    status, _, body = get(stack.port, "/exchange/", "alice", "alice-pw")
    assert status == 200
    assert body == b"mailbox alice on ex1.example.com\n"
    (record,) = clean_farm.requests("ex1.example.com")
    assert record["uri"] == "/exchange/alice/"
    assert record["host"] == "mail.example.com"


@pytest.mark.usefixtures("clean_farm")
def test_explicit_logon_by_name_and_by_address(stack: Stack) -> None:
    """/exchange/bob/ and /exchange/a.archer@example.com/ reach the right servers."""
    assert (
        get(stack.port, "/exchange/bob/", "alice", "alice-pw")[2]
        == b"mailbox bob on ex2.example.com\n"
    )
    status, headers, _ = get(stack.port, "/exchange/alice@corp.example.net/", "bob", "bob-pw")
    assert status == 200
    assert headers["x-backend-server"] == "ex1.example.com"


@pytest.mark.usefixtures("clean_farm")
def test_logins_by_upn_and_domain_backslash_user(stack: Stack) -> None:
    """A user can log in as alice@example.com or EXAMPLE\\alice."""
    assert get(stack.port, "/exchange/", "alice@example.com", "alice-pw")[0] == 200
    assert get(stack.port, "/exchange/", "EXAMPLE\\alice", "alice-pw")[0] == 200


@pytest.mark.usefixtures("clean_farm")
def test_non_ascii_user_reaches_his_mailbox(stack: Stack) -> None:
    """jose (José Núñez) logs on implicitly."""
    status, _, body = get(stack.port, "/exchange/", "jose", "jose-pw")
    assert status == 200
    assert body == b"mailbox jose on ex2.example.com\n"


def test_answers_401_403_404_with_one_line(stack: Stack, clean_farm: Farm) -> None:
    """Wrong password 401 with challenge; carol 403; dave and unknown mailbox 404."""
    status, headers, body = get(stack.port, "/exchange/", "alice", "nope")
    assert status == 401
    assert headers["www-authenticate"] == 'Basic realm="example.com"'
    assert get(stack.port, "/exchange/", "carol", "carol-pw")[0] == 403
    assert get(stack.port, "/exchange/", "dave", "dave-pw")[0] == 404
    status, _, body = get(stack.port, "/exchange/nobody/", "alice", "alice-pw")
    assert status == 404
    assert body == b"404 No such mailbox.\n"
    assert clean_farm.requests() == []


def test_hostile_login_and_mailbox_names_match_nobody(stack: Stack, clean_farm: Farm) -> None:
    """LDAP filter metacharacters in a login or a URL never match another entry."""
    assert get(stack.port, "/exchange/", "*", "alice-pw")[0] == 401
    assert get(stack.port, "/exchange/", "alice)(sAMAccountName=*", "alice-pw")[0] == 401
    assert get(stack.port, "/exchange/%2A/", "alice", "alice-pw")[0] == 404
    assert get(stack.port, "/exchange/bob)(mail=*/", "alice", "alice-pw")[0] in (
        400,
        404,
    )
    assert clean_farm.requests() == []


@pytest.mark.usefixtures("clean_farm")
def test_default_public_tree_goes_to_users_public_store(stack: Stack) -> None:
    """/public/ goes to the public store of the user's mailbox store (bob: PF2 on ex2)."""
    status, headers, _ = get(stack.port, "/public/Announcements/", "bob", "bob-pw")
    assert status == 200
    assert headers["x-backend-server"] == "ex2.example.com"


def test_general_tree_referral_is_followed_and_cached(stack: Stack, clean_farm: Farm) -> None:
    """Archive lives on ex3 only: whoever hashes elsewhere is referred there invisibly,
    and the next request goes straight to ex3."""
    for user in ("alice", "bob", "jose"):
        status, headers, body = get(stack.port, "/apps/Archive/", user, f"{user}-pw")
        assert status == 200
        assert headers["x-backend-server"] == "ex3.example.com"
        assert body == b"Archive of 2003: minutes and reports.\n"
    referred = [r for r in clean_farm.requests() if r["server"] != "ex3.example.com"]
    assert len(referred) <= 1  # only the first request could be referred
    clean_farm.clear()
    get(stack.port, "/apps/Archive/", "bob", "bob-pw")
    assert [r["server"] for r in clean_farm.requests()] == ["ex3.example.com"]


def test_unreachable_replica_moves_its_users_to_the_next(stack: Stack, clean_farm: Farm) -> None:
    """With a user's replica refusing, the user is served by another replica."""
    get(stack.port, "/apps/Projects/", "alice", "alice-pw")
    (first,) = clean_farm.requests()
    clean_farm.set_fault(first["server"], "refuse")
    clean_farm.clear()
    status, headers, _ = get(stack.port, "/apps/Projects/", "alice", "alice-pw")
    assert status == 200
    assert headers["x-backend-server"] != first["server"]


def test_sighup_reload_keeps_serving_and_refuses_a_bad_file(
    farm: Farm, slapd: Slapd, tmp_path: Path
) -> None:
    """kill -HUP with a broken file keeps the old configuration; a good one takes
    effect; SIGTERM then exits 0."""
    port = free_port()
    config = fe_config(tmp_path / "fe.toml", port, farm, slapd)
    with ServeProcess.start(config, ("127.0.0.1", port)) as serve:
        assert get(port, "/exchange/", "alice", "alice-pw")[0] == 200
        good = config.read_text()
        config.write_text(good.replace('kind = "mailbox"', 'kind = "bogus"'))
        serve.signal(signal.SIGHUP)
        time.sleep(0.5)
        assert get(port, "/exchange/", "alice", "alice-pw")[0] == 200
        assert "vdirs[0].kind" in serve.errors()
        config.write_text(
            good.replace('servers = ["ex1.example.com"]', 'servers = ["ex2.example.com"]')
        )
        serve.signal(signal.SIGHUP)
        deadline = time.monotonic() + 5
        while get(port, "/exchweb/echo")[1]["x-backend-server"] != "ex2.example.com":
            assert time.monotonic() < deadline
            time.sleep(0.1)
        assert get(port, "/exchange/", "alice", "alice-pw")[0] == 200
        assert serve.stop() == 0  # SIGTERM: listeners and directory threads stop, exit 0


def test_directory_outage_serves_cached_users_503_for_others_then_recovers(
    farm: Farm, slapd_factory: Callable[..., Slapd], tmp_path: Path
) -> None:
    """With slapd stopped, a cached user keeps working and an uncached one gets 503;
    once slapd is back the front end reconnects by itself."""
    directory = slapd_factory()
    port = free_port()
    config = fe_config(tmp_path / "fe.toml", port, farm, directory)
    with ServeProcess.start(config, ("127.0.0.1", port)) as serve:
        assert get(port, "/exchange/", "alice", "alice-pw")[0] == 200
        directory.stop()
        assert get(port, "/exchange/", "alice", "alice-pw")[0] == 200
        status, _, body = get(port, "/exchange/", "bob", "bob-pw")
        assert status == 503
        assert body == b"503 The directory is unavailable; try again later.\n"
        directory.start()
        assert get(port, "/exchange/", "bob", "bob-pw")[0] == 200
        assert "directory" in serve.errors()


@pytest.mark.parametrize("fault", ["drop", "garbage", "hang", "cut", "delay"])
def test_post_reaches_at_most_one_back_end_whatever_fails(
    stack: Stack, clean_farm: Farm, fault: str
) -> None:
    """Whatever the user's replica does after receiving a POST, no other replica
    ever gets it; the client gets an error it can see."""
    status, headers, _ = get(stack.port, "/apps/Projects/", "bob", "bob-pw")
    server = headers["x-backend-server"]
    params: dict[str, Any] = {"cut": {"after_bytes": 3}, "delay": {"seconds": 8}}.get(fault, {})
    clean_farm.set_fault(server, fault, **params)
    clean_farm.clear()
    try:
        status, _, _ = get(
            stack.port, "/apps/Projects/new.eml", "bob", "bob-pw", method="POST", body=b"x" * 100
        )
    except http.client.IncompleteRead:
        status = -1  # a visibly truncated answer
    posts = [r for r in clean_farm.requests() if r["method"] == "POST"]
    assert [r["server"] for r in posts] == [server]
    assert status in (-1, 502, 504)


def test_refused_post_goes_to_the_next_replica_once(stack: Stack, clean_farm: Farm) -> None:
    """A refused connection carried nothing, so the POST goes to the next replica, once."""
    _, headers, _ = get(stack.port, "/apps/Projects/", "jose", "jose-pw")
    server = headers["x-backend-server"]
    clean_farm.set_fault(server, "refuse")
    clean_farm.clear()
    status, headers, _ = get(
        stack.port, "/apps/Projects/new.eml", "jose", "jose-pw", method="POST", body=b"x" * 100
    )
    assert status == 200
    assert headers["x-backend-server"] != server
    posts = [r for r in clean_farm.requests() if r["method"] == "POST"]
    assert len(posts) == 1
