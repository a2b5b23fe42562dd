"""``feproxy plan`` on conf/directory.ldif in a real slapd: who moves, checked
against the front end's own routing functions; its outputs; its errors."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted

from frontend.config import Config, parse_config
from frontend.directory.interfaces import UserEntry
from frontend.directory.inventory import LdapInventory
from frontend.ops.plan_output import CSV_HEADER, plan_csv, plan_json, plan_table
from frontend.ops.planning import Plan, PlanError, ReplicaChange, StoreChange, make_plan
from frontend.ops.reactor import global_reactor
from frontend.routing.decisions import public_order, user_token
from frontend.routing.hashing import policy_named
from tests.support.configs import write_config
from tests.support.slapd import Slapd
from tests.support.users import MB1, SERVERS

reactor = global_reactor()

ROOT = Path(__file__).resolve().parent.parent
APPS = ("ex2.example.com", "ex3.example.com", "ex4.example.com")
DEFAULT = ("ex1.example.com", "ex2.example.com")
#: Who the front end routes to public folders in conf/directory.ldif: every
#: user whose HTTP is enabled (carol's is not), with a mailbox or without.
ROUTED = ["alice", "bob", "dave", "feproxy", "jose"]
PF1 = f"cn=PF1,cn=InformationStore,cn=EX1,{SERVERS}"
PF2 = f"cn=PF2,cn=InformationStore,cn=EX2,{SERVERS}"


def config_data(slapd: Slapd, **frontend: object) -> dict[str, Any]:
    settings = slapd.settings()
    return {
        "frontend": {"name": "fe1", "listen": ["tcp:0:interface=127.0.0.1"], **frontend},
        "directory": {
            "url": settings.url,
            "bind_dn": settings.bind_dn,
            "bind_password": settings.bind_password,
            "base_dn": settings.base_dn,
            "config_dn": settings.config_dn,
            "timeout": 2.0,
        },
        "vdirs": [
            {"path": "/public", "kind": "public", "tree": "default"},
            {"path": "/apps", "kind": "public", "tree": "Apps"},
        ],
    }


def make_config(slapd: Slapd, **frontend: object) -> Config:
    return parse_config(config_data(slapd, **frontend))


class Planner:
    """Plans on the shared slapd, under a configuration made per call."""

    def __init__(self, slapd: Slapd, inventory: LdapInventory) -> None:
        self.slapd = slapd
        self.inventory = inventory

    async def plan(self, change: ReplicaChange | StoreChange, **frontend: object) -> Plan:
        return await make_plan(self.inventory, make_config(self.slapd, **frontend), change)

    async def users(self) -> dict[str, UserEntry]:
        return {u.login: u for u in await self.inventory.all_users()}


@pytest_twisted.async_yield_fixture
async def planner(slapd: Slapd) -> AsyncIterator[Planner]:
    """A Planner over a started LdapInventory on the shared slapd."""
    client = LdapInventory(slapd.settings(), reactor)
    client.start()
    yield Planner(slapd, client)
    await client.stop()


def moves(plan: Plan) -> dict[str, tuple[str | None, str | None]]:
    return {u.login: (u.placement.before, u.placement.after) for u in plan.moving}


@pytest.mark.parametrize("policy", ["rendezvous", "exchange"])
@pytest.mark.parametrize(
    ("add", "remove", "after"),
    [
        (("ex1.example.com",), (), ("ex1.example.com", *APPS)),
        ((), ("EX4",), APPS[:2]),
        (("EX1",), ("ex3.EXAMPLE.com",), ("ex1.example.com", "ex2.example.com", "ex4.example.com")),
    ],
)
@pytest_twisted.ensureDeferred
async def test_every_user_is_placed_as_the_front_end_routes_before_and_after(
    planner: Planner,
    policy: str,
    add: tuple[str, ...],
    remove: tuple[str, ...],
    after: tuple[str, ...],
) -> None:
    """Apps with servers added and removed (by host name or cn, any case): each
    user's servers are public_order()'s first over the old and new lists."""
    plan = await planner.plan(ReplicaChange("Apps", add, remove), hash_policy=policy)
    assert plan.before == APPS
    assert plan.after == after
    assert [u.login for u in plan.users] == ROUTED
    hashing = policy_named(policy)
    users = await planner.users()
    for planned in plan.users:
        token = user_token(users[planned.login])
        assert planned.token == token
        assert planned.placement.before == public_order(hashing, token, APPS)[0]
        assert planned.placement.after == public_order(hashing, token, after)[0]
    movers = [u for u in plan.users if u.placement.before != u.placement.after]
    assert plan.moving == tuple(movers)
    assert plan.summary.users == len(ROUTED)
    assert plan.summary.moving == len(movers)


@pytest_twisted.ensureDeferred
async def test_adding_ex1_to_apps_moves_bob_from_ex4(planner: Planner) -> None:
    """The README's example: only bob moves, ex4 -> ex1; the counts say so."""
    plan = await planner.plan(ReplicaChange("apps", ("ex1.example.com",)))
    assert plan.tree == "Apps"
    assert moves(plan) == {"bob": ("ex4.example.com", "ex1.example.com")}
    assert plan.summary.moves == {("ex4.example.com", "ex1.example.com"): 1}
    assert plan.summary.before == {
        "ex1.example.com": 0,
        "ex2.example.com": 1,
        "ex3.example.com": 3,
        "ex4.example.com": 1,
    }
    assert plan.summary.after["ex1.example.com"] == 1
    assert plan.summary.after["ex4.example.com"] == 0
    assert plan.notes == ()


@pytest_twisted.ensureDeferred
async def test_on_the_default_tree_users_with_a_public_store_stay_on_its_server(
    planner: Planner,
) -> None:
    """--tree default: alice, bob and jose keep their store's server first; the
    others (no mailbox) are hashed over the new list."""
    plan = await planner.plan(ReplicaChange("default", ("ex3.example.com",)))
    hashing = policy_named("rendezvous")
    users = await planner.users()
    homes = {"alice": "ex1.example.com", "bob": "ex2.example.com", "jose": "ex2.example.com"}
    for planned in plan.users:
        home = homes.get(planned.login)
        token = user_token(users[planned.login])
        new = (*DEFAULT, "ex3.example.com")
        assert planned.placement.before == (home or public_order(hashing, token, DEFAULT)[0])
        assert planned.placement.after == (home or public_order(hashing, token, new)[0])
    assert set(moves(plan)) <= {"dave", "feproxy"}
    assert plan.tree == "default"


@pytest_twisted.ensureDeferred
async def test_a_mailbox_stores_new_public_store_moves_its_users(planner: Planner) -> None:
    """--store MB1 --public-store PF2: MB1's routed users (alice; carol has no
    HTTP) go from ex1 to ex2; nobody else is listed."""
    plan = await planner.plan(StoreChange("MB1", PF2))
    assert moves(plan) == {"alice": ("ex1.example.com", "ex2.example.com")}
    assert [u.login for u in plan.users] == ["alice"]
    assert plan.store is not None
    assert (plan.store.dn, plan.store.name) == (MB1, "MB1")
    assert plan.store.public_store_after == PF2
    assert (plan.store.server_before, plan.store.server_after) == DEFAULT
    assert plan.before == plan.after == DEFAULT


@pytest_twisted.ensureDeferred
async def test_without_authentication_everyone_goes_to_the_first_replica_by_name(
    planner: Planner,
) -> None:
    """authenticate = false: no user is hashed; ex1 sorts first, so all move to it."""
    plan = await planner.plan(ReplicaChange("Apps", ("ex1.example.com",)), authenticate=False)
    assert not plan.balanced
    assert len(plan.users) == 6  # carol too: nobody is checked
    assert set(moves(plan).values()) == {("ex2.example.com", "ex1.example.com")}
    assert all(u.token is None for u in plan.users)


@pytest_twisted.ensureDeferred
async def test_a_server_unknown_to_the_directory_is_planned_with_a_note(
    planner: Planner,
) -> None:
    """--add a host the directory does not know: planned by that name, and said so."""
    plan = await planner.plan(ReplicaChange("Apps", ("EX9.example.com",)))
    assert plan.added == ("ex9.example.com",)
    assert plan.notes == (
        "ex9.example.com is not a server of the directory: planned by that host name",
    )


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (ReplicaChange("Nope", ("ex1",)), "no public folder tree Nope in the directory"),
        (ReplicaChange("Apps", (), ("ex1.example.com",)), "ex1.example.com is not a replica"),
        (ReplicaChange("Apps", (), ("EX9",)), "EX9 is not a replica of tree Apps"),
        (ReplicaChange("Apps", ("EX2",)), "EX2 is already a replica of tree Apps"),
        (ReplicaChange("Apps", ("ex2.Example.com",)), "already a replica"),
        (ReplicaChange("Apps", ("bad name!",)), "neither a server of the directory nor a host"),
        (ReplicaChange("Apps", (), ("ex2", "ex3", "ex4")), "without a replica"),
        (ReplicaChange("default", (), ("ex1",)), "holds the public store of mailbox store MB1"),
        (StoreChange("MB9", "PF2"), "no mailbox store MB9 in the directory (known: MB1, MB2)"),
        (StoreChange("MB1", "PF9"), "no public store PF9"),
        (StoreChange("MB1", "pf1"), "PF1 is already the public store of MB1"),
        (StoreChange("MB1", "APPS3"), "APPS3 is a public store of tree Apps, not of the default"),
    ],
)
@pytest_twisted.ensureDeferred
async def test_a_change_that_does_not_fit_the_directory_is_refused(
    planner: Planner, change: ReplicaChange | StoreChange, message: str
) -> None:
    """Unknown tree or store, not a replica, already one, and the like: PlanError."""
    with pytest.raises(PlanError) as raised:
        await planner.plan(change)
    assert message in str(raised.value)


@pytest_twisted.ensureDeferred
async def test_json_holds_the_change_the_movers_and_the_counts(planner: Planner) -> None:
    """--format json: one object with replica lists, movers, moves and servers."""
    plan = await planner.plan(ReplicaChange("Apps", ("ex1.example.com",)))
    data = json.loads(json.dumps(plan_json(plan)))
    assert data["version"] == 1
    assert (data["change"], data["tree"], data["policy"]) == ("replicas", "Apps", "rendezvous")
    assert data["before"] == list(APPS)
    assert data["after"] == ["ex1.example.com", *APPS]
    assert (data["added"], data["removed"], data["store"]) == (["ex1.example.com"], [], None)
    assert (data["users"], data["moved"], data["moved_fraction"]) == (5, 1, 0.2)
    (bob,) = data["moving"]
    assert bob["login"] == "bob"
    assert bob["dn"] == "cn=Bob Baker,cn=Users,dc=example,dc=com"
    assert bob["mail"] == "bob@example.com"
    assert bytes.fromhex(bob["token"]) == plan.moving[0].token
    assert (bob["from"], bob["to"]) == ("ex4.example.com", "ex1.example.com")
    assert data["moves"] == {"ex4.example.com -> ex1.example.com": 1}
    assert data["servers"]["ex4.example.com"] == {"before": 1, "after": 0}
    assert data["servers"]["ex1.example.com"] == {"before": 0, "after": 1}


@pytest_twisted.ensureDeferred
async def test_csv_has_a_header_and_one_row_per_mover(planner: Planner) -> None:
    """--format csv: login, dn (quoted: it holds commas), mail, token, from, to."""
    plan = await planner.plan(ReplicaChange("Apps", (), ("ex3.example.com",)))
    rows = list(csv.reader(io.StringIO(plan_csv(plan))))
    assert tuple(rows[0]) == CSV_HEADER
    assert [row[0] for row in rows[1:]] == [u.login for u in plan.moving]
    assert len(rows) == 1 + plan.summary.moving == 4
    for row in rows[1:]:
        assert row[4] == "ex3.example.com"
        assert row[1].startswith("cn=")
        assert row[1].endswith(",cn=Users,dc=example,dc=com")


@pytest_twisted.ensureDeferred
async def test_the_table_aligns_the_movers_and_totals(planner: Planner) -> None:
    """The default table: heading, aligned mover columns, moves and per-server totals."""
    plan = await planner.plan(ReplicaChange("Apps", (), ("ex3.example.com",)))
    lines = plan_table(plan).splitlines()
    assert lines[0] == "feproxy plan: tree Apps, removing ex3.example.com"
    header = lines.index("login    from             to               mail               dn")
    movers = lines[header + 1 : header + 4]
    assert [line.split()[0] for line in movers] == ["alice", "dave", "feproxy"]
    assert all(line.index("ex3.example.com") == len("feproxy  ") for line in movers)
    assert "users: 5, moving: 3 (60.0%)" in lines
    assert lines[-8:] == [
        "move                                users",
        "ex3.example.com -> ex2.example.com      2",
        "ex3.example.com -> ex4.example.com      1",
        "",
        "server           before  after",
        "ex2.example.com       1      3",
        "ex3.example.com       3      0",
        "ex4.example.com       1      2",
    ]


def run_plan(*args: str) -> subprocess.CompletedProcess[str]:
    """``feproxy plan ARGS...`` as a process."""
    return subprocess.run(
        [sys.executable, "-m", "frontend", "plan", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
        check=False,
    )


@pytest.fixture(scope="module")
def config_file(slapd: Slapd, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_config(tmp_path_factory.mktemp("plan") / "fe.toml", config_data(slapd))


def test_the_command_prints_the_json_plan(config_file: Path) -> None:
    """feproxy plan --format json: exit 0, the plan on standard output, nothing else."""
    done = run_plan(
        "--config", str(config_file), "--tree", "Apps", "--add", "EX1", "--format", "json"
    )
    assert (done.returncode, done.stderr) == (0, "")
    data = json.loads(done.stdout)
    assert [(m["login"], m["from"], m["to"]) for m in data["moving"]] == [
        ("bob", "ex4.example.com", "ex1.example.com")
    ]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--tree", "Nope", "--add", "ex1"), "no public folder tree Nope in the directory"),
        (("--tree", "Apps", "--remove", "ex1.example.com"), "ex1.example.com is not a replica"),
        (("--tree", "Apps", "--add", "ex4.example.com"), "is already a replica of tree Apps"),
        (("--store", "MB1", "--public-store", "PF1"), "PF1 is already the public store of MB1"),
    ],
)
def test_the_command_refuses_a_change_in_one_line_with_status_1(
    config_file: Path, args: tuple[str, ...], message: str
) -> None:
    """Errors: one line on standard error naming the problem, exit 1, no traceback."""
    done = run_plan("--config", str(config_file), *args)
    assert done.returncode == 1
    assert done.stdout == ""
    (line,) = done.stderr.splitlines()
    assert line.startswith("feproxy plan: ")
    assert message in line


def test_an_unreachable_directory_is_one_line_and_status_1(slapd: Slapd, tmp_path: Path) -> None:
    """A directory that does not answer: 'directory unreachable' naming it, exit 1."""
    data = config_data(slapd)
    data["directory"]["url"] = "ldap://127.0.0.1:1"
    done = run_plan(
        "--config", str(write_config(tmp_path / "fe.toml", data)), "--tree", "Apps", "--add", "ex1"
    )
    assert done.returncode == 1
    (line,) = done.stderr.splitlines()
    assert line.startswith("feproxy plan: directory unreachable: ")
    assert "ldap://127.0.0.1:1" in line


@pytest.mark.parametrize(
    "args",
    [
        ("--tree", "Apps"),
        ("--tree", "Apps", "--add", "ex1", "--public-store", "PF2"),
        ("--store", "MB1"),
        ("--store", "MB1", "--public-store", "PF2", "--remove", "ex2"),
    ],
)
def test_options_that_do_not_go_together_exit_2(config_file: Path, args: tuple[str, ...]) -> None:
    """--tree without --add/--remove, --store without --public-store, mixed: exit 2."""
    done = run_plan("--config", str(config_file), *args)
    assert done.returncode == 2
    (line,) = done.stderr.splitlines()
    assert line.startswith("feproxy plan: ")


@pytest_twisted.ensureDeferred
async def test_the_store_table_names_both_public_stores_and_servers(planner: Planner) -> None:
    """--store: the table's heading names the store, both public stores and servers."""
    plan = await planner.plan(StoreChange("mb1", "PF2"))
    lines = plan_table(plan).splitlines()
    assert lines[:4] == [
        "feproxy plan: the public store of mailbox store MB1",
        f"public store before: {PF1}",
        f"public store after:  {PF2}",
        "its users' public-folder server: ex1.example.com -> ex2.example.com",
    ]
    assert "users: 1, moving: 1 (100.0%)" in lines
