"""``feproxy plan`` against what really happens: the change is made in a real
slapd, the real ``feproxy serve`` reloads, and every user's request lands
where the plan said (the stub farm names its server in X-Backend-Server).

Each test plans a change, makes it, checks, and undoes it.
"""

from __future__ import annotations

import base64
import http.client
import json
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from ldap3 import MODIFY_REPLACE, NONE, Connection, Server

from frontend.loadtest.slapd import ROOT_DN, ROOT_PASSWORD, Slapd, SlapdError
from tests.support.configs import to_toml, write_config
from tests.support.farm import Farm, free_port
from tests.support.serve import ROOT, ServeProcess
from tests.support.users import MB1, PASSWORDS, SERVERS, extra_users, users_ldif

HOSTS = {f"ex{i}.example.com": f"127.0.0.{i + 1}" for i in range(1, 5)}
APPS_TREE = "cn=Apps,cn=Folder Hierarchies,cn=Exchange,cn=Configuration,dc=example,dc=com"
APPS1 = f"cn=APPS1,cn=InformationStore,cn=EX1,{SERVERS}"
APPS4 = f"cn=APPS4,cn=InformationStore,cn=EX4,{SERVERS}"
PF1 = f"cn=PF1,cn=InformationStore,cn=EX1,{SERVERS}"
PF2 = f"cn=PF2,cn=InformationStore,cn=EX2,{SERVERS}"
EXTRA = extra_users(30, seed=15)
#: Every user the front end routes, with their password (carol's HTTP is disabled).
LOGINS = {
    **{login: pw for login, pw in PASSWORDS.items() if login != "carol"},
    **{u.login: u.password for u in EXTRA},
}
RELOADED = "configuration reloaded from"


def _store(host: str) -> dict[str, list[str]]:
    short = host.split(".", 1)[0].upper()
    return {
        "objectClass": ["top", "msExchPublicMDB"],
        "cn": [f"APPS{short[2:]}"],
        "msExchOwningServer": [f"cn={short},{SERVERS}"],
        "msExchOwningPFTree": [APPS_TREE],
    }


@dataclass
class Stack:
    """slapd with 30 more users, a farm whose every server holds every folder
    it may be sent, ``feproxy serve`` in front, and its configuration file."""

    slapd: Slapd
    serve: ServeProcess
    port: int
    config: Path

    def land(self, path: str) -> dict[str, str]:
        """The server each user's request for ``path`` is answered by."""
        landed = {}
        for login, password in LOGINS.items():
            credentials = base64.b64encode(f"{login}:{password}".encode()).decode()
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
            try:
                conn.request("GET", path, headers={"Authorization": f"Basic {credentials}"})
                response = conn.getresponse()
                response.read()
            finally:
                conn.close()
            assert response.status == 200, (login, response.status)
            landed[login] = response.getheader("X-Backend-Server", "")
        return landed

    def write(self, change: Callable[[Connection], bool]) -> None:
        """Change the directory as its administrator, then reload the front end."""
        conn = Connection(
            Server(self.slapd.url, get_info=NONE), ROOT_DN, ROOT_PASSWORD, auto_bind=True
        )
        try:
            assert change(conn), conn.result
        finally:
            conn.unbind()
        self.reload()

    def reload(self) -> None:
        """SIGHUP ``feproxy serve`` (its caches empty) and wait until it says so."""
        seen = self.serve.errors().count(RELOADED)
        self.serve.signal(signal.SIGHUP)
        deadline = time.monotonic() + 60
        while self.serve.errors().count(RELOADED) == seen:
            assert time.monotonic() < deadline, self.serve.errors()
            time.sleep(0.05)

    def plan(self, *args: str) -> dict[str, Any]:
        """``feproxy plan --config ... ARGS --format json``, parsed."""
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "frontend",
                "plan",
                "--config",
                str(self.config),
                *args,
                "--format",
                "json",
            ],
            capture_output=True,
            text=True,
            cwd=ROOT,
            timeout=120,
            check=False,
        )
        assert (done.returncode, done.stderr) == (0, "")
        data: dict[str, Any] = json.loads(done.stdout)
        return data


def _topology(path: Path) -> Path:
    """Every server holds /apps/Projects and /public/Announcements: no referral
    hides where the front end sent a request."""
    servers = [{"name": n, "address": a, "mailboxes": []} for n, a in HOSTS.items()]
    folders = [
        {"path": "/apps/Projects", "content": "projects\n", "servers": list(HOSTS)},
        {"path": "/public/Announcements", "content": "news\n", "servers": list(HOSTS)},
    ]
    topology = {"port": 8080, "control": "127.0.0.1:8079", "servers": servers, "folders": folders}
    path.write_text(to_toml(topology))  # port and control: replaced by Farm.start's
    return path


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """The whole stack for this module's tests, which undo their changes."""
    work = tmp_path_factory.mktemp("plan-live")
    (work / "slapd").mkdir()
    slapd = Slapd(work / "slapd", extra_ldif=users_ldif(EXTRA))
    try:
        slapd.start()
    except SlapdError as error:  # SlapdNotFound included: fail, never skip
        pytest.fail(f"slapd: {error}", pytrace=False)
    port = free_port()
    control = free_port(("127.0.0.1",), exclude={port})
    try:
        with Farm.start(str(_topology(work / "topology.toml")), port, control) as farm:
            front = free_port(("127.0.0.1",), exclude={port, control})
            settings = slapd.settings()
            config = write_config(
                work / "fe.toml",
                {
                    "frontend": {
                        "name": "fe1.example.com",
                        "listen": [f"tcp:{front}:interface=127.0.0.1"],
                        "backend_port": farm.port,
                    },
                    "hosts": HOSTS,
                    "directory": {
                        "url": settings.url,
                        "bind_dn": settings.bind_dn,
                        "bind_password": settings.bind_password,
                        "base_dn": settings.base_dn,
                        "config_dn": settings.config_dn,
                        "poll_interval": 0,
                    },
                    "vdirs": [
                        {"path": "/public", "kind": "public", "tree": "default"},
                        {"path": "/apps", "kind": "public", "tree": "Apps"},
                    ],
                },
            )
            with ServeProcess.start(config, ("127.0.0.1", front)) as serve:
                yield Stack(slapd, serve, front, config)
    finally:
        slapd.stop()


def moved(before: dict[str, str], after: dict[str, str]) -> dict[str, tuple[str, str]]:
    return {
        login: (before[login], after[login]) for login in before if before[login] != after[login]
    }


def planned(plan: dict[str, Any]) -> dict[str, tuple[str, str]]:
    return {m["login"]: (m["from"], m["to"]) for m in plan["moving"]}


def pairs(moves: dict[str, tuple[str, str]]) -> dict[str, int]:
    return dict(Counter(f"{old} -> {new}" for old, new in moves.values()))


def test_adding_a_replica_moves_exactly_the_users_plan_listed(stack: Stack) -> None:
    """--add ex1: the users whose answers now come from ex1 are plan's movers,
    each from the server plan named; nobody else moves."""
    before = stack.land("/apps/Projects/")
    plan = stack.plan("--tree", "Apps", "--add", "EX1")
    assert plan["users"] == len(LOGINS)
    stack.write(lambda conn: conn.add(APPS1, attributes=_store("ex1.example.com")))
    try:
        after = stack.land("/apps/Projects/")
    finally:
        stack.write(lambda conn: conn.delete(APPS1))
    assert moved(before, after) == planned(plan)
    assert set(after.values()) >= {"ex1.example.com"}
    assert plan["moves"] == pairs(planned(plan))
    for server, counts in plan["servers"].items():
        assert counts == {
            "before": list(before.values()).count(server),
            "after": list(after.values()).count(server),
        }


def test_removing_a_replica_moves_exactly_its_users_where_plan_said(stack: Stack) -> None:
    """--remove ex4: ex4's users, and only they, land where plan said."""
    before = stack.land("/apps/Projects/")
    plan = stack.plan("--tree", "Apps", "--remove", "ex4.example.com")
    stack.write(lambda conn: conn.delete(APPS4))
    try:
        after = stack.land("/apps/Projects/")
    finally:
        stack.write(lambda conn: conn.add(APPS4, attributes=_store("ex4.example.com")))
    assert moved(before, after) == planned(plan)
    assert {login for login, server in before.items() if server == "ex4.example.com"} == set(
        planned(plan)
    )
    assert "ex4.example.com" not in after.values()


def test_a_new_public_store_moves_the_stores_users_where_plan_said(stack: Stack) -> None:
    """--store MB1 --public-store PF2: MB1's users' /public/ requests go to ex2."""
    before = stack.land("/public/Announcements/")
    plan = stack.plan("--store", "MB1", "--public-store", "PF2")
    stack.write(lambda conn: conn.modify(MB1, {"msExchHomePublicMDB": [(MODIFY_REPLACE, [PF2])]}))
    try:
        after = stack.land("/public/Announcements/")
    finally:
        stack.write(
            lambda conn: conn.modify(MB1, {"msExchHomePublicMDB": [(MODIFY_REPLACE, [PF1])]})
        )
    moves = moved(before, after)
    assert moves == planned(plan)
    mb1 = {"alice"} | {u.login for u in EXTRA if u.home_mdb == MB1}
    assert set(moves) == mb1
    assert set(moves.values()) == {("ex1.example.com", "ex2.example.com")}
