"""LdapInventory (the listings of ``feproxy plan``) against a real slapd."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from types import SimpleNamespace
from typing import TYPE_CHECKING, cast

import pytest
import pytest_twisted

from frontend.directory.inventory import LdapInventory
from frontend.directory.ldap import LdapDirectory
from frontend.errors import DirectoryUnavailable
from frontend.ops.reactor import global_reactor
from tests.support.slapd import Slapd
from tests.support.users import MB1, SERVERS, extra_users, users_ldif

if TYPE_CHECKING:
    from ldap3 import Connection

reactor = global_reactor()

PF1 = f"cn=PF1,cn=InformationStore,cn=EX1,{SERVERS}"
TREES = "cn=Folder Hierarchies,cn=Exchange,cn=Configuration,dc=example,dc=com"


@pytest_twisted.async_yield_fixture
async def inventory(slapd: Slapd) -> AsyncIterator[LdapInventory]:
    """A started LdapInventory on the shared slapd."""
    client = LdapInventory(slapd.settings(), reactor)
    client.start()
    yield client
    await client.stop()


@pytest_twisted.ensureDeferred
async def test_all_users_reads_each_user_as_find_user_does(inventory: LdapInventory) -> None:
    """Every user entry of conf/directory.ldif, each equal to find_user's entry."""
    users = await inventory.all_users()
    logins = sorted(u.login for u in users)
    assert logins == ["alice", "bob", "carol", "dave", "feproxy", "jose"]
    for user in users:
        assert await inventory.find_user(user.login) == user
    alice = next(u for u in users if u.login == "alice")
    assert alice.token == uuid.uuid5(uuid.NAMESPACE_URL, "feproxy:user:alice").bytes_le
    assert alice.home_mdb == MB1


@pytest_twisted.ensureDeferred
async def test_all_users_pages_past_slapds_limit_of_500(
    slapd_factory: Callable[..., Slapd],
) -> None:
    """600 more users: all listed (an unpaged search stops at 500)."""
    more = extra_users(600)
    client = LdapInventory(slapd_factory(users_ldif(more)).settings(), reactor)
    client.start()
    try:
        users = await client.all_users()
    finally:
        await client.stop()
    assert len(users) == 606
    listed = {u.login: u.token for u in users}
    assert {u.login: listed.get(u.login) for u in more} == {u.login: u.token for u in more}


@pytest_twisted.ensureDeferred
async def test_config_entries_name_trees_servers_and_stores(inventory: LdapInventory) -> None:
    """Each kind lists its entries with what a plan needs: host, tree type, public store."""
    trees = await inventory.config_entries("tree")
    assert [(t.name, t.default_tree) for t in trees] == [("Apps", False), ("Public Folders", True)]
    servers = await inventory.config_entries("server")
    assert [(s.name, s.host) for s in servers] == [
        (f"EX{i}", f"ex{i}.example.com") for i in range(1, 5)
    ]
    stores = await inventory.config_entries("mailbox_store")
    assert [(s.name, s.public_store) for s in stores] == [
        ("MB1", PF1),
        ("MB2", f"cn=PF2,cn=InformationStore,cn=EX2,{SERVERS}"),
    ]
    publics = await inventory.config_entries("public_store")
    assert [(p.name, p.tree) for p in publics] == [
        ("APPS2", f"cn=Apps,{TREES}"),
        ("APPS3", f"cn=Apps,{TREES}"),
        ("APPS4", f"cn=Apps,{TREES}"),
        ("PF1", f"cn=Public Folders,{TREES}"),
        ("PF2", f"cn=Public Folders,{TREES}"),
    ]
    assert publics[3].dn == PF1


@pytest_twisted.ensureDeferred
async def test_an_unreachable_directory_fails_the_listing(slapd: Slapd) -> None:
    """A directory that is not there: DirectoryUnavailable, as for every lookup."""
    client = LdapInventory(slapd.settings(url="ldap://127.0.0.1:1", timeout=1.0), reactor)
    client.start()
    try:
        with pytest.raises(DirectoryUnavailable):
            await client.all_users()
    finally:
        await client.stop()


@pytest.mark.parametrize("code", [3, 4, 11])
def test_a_user_listing_cut_short_is_an_error_not_a_shorter_list(slapd: Slapd, code: int) -> None:
    """A search the directory stopped early (time, size, admin limit) raises."""
    client = LdapInventory(slapd.settings(), reactor)
    search = SimpleNamespace(paged_search=lambda *_a, **_k: [])
    conn = SimpleNamespace(
        extend=SimpleNamespace(standard=search),
        result={"result": code, "description": "sizeLimitExceeded"},
    )
    with pytest.raises(DirectoryUnavailable, match="cut the list of users"):
        # A stand-in for ldap3's Connection: only what the listing touches.
        client._all_users(cast("Connection", conn))


def test_the_inventory_is_the_front_ends_directory_client() -> None:
    """LdapInventory adds listings to LdapDirectory; it is no second LDAP client."""
    assert issubclass(LdapInventory, LdapDirectory)
