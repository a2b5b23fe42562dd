"""The demo directory (ldaptor, in memory) answers LdapDirectory's lookups."""

from __future__ import annotations

import socket
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_twisted
from twisted.internet.defer import Deferred

from frontend.directory.ldap import LdapDirectory, UserEntry
from frontend.ops.demo_directory import DemoDirectory, start_demo_directory
from frontend.ops.reactor import global_reactor

reactor = global_reactor()

LDIF = Path(__file__).resolve().parents[1] / "conf" / "directory.ldif"
CONFIG = "cn=Configuration,dc=example,dc=com"
SERVERS = f"cn=Servers,cn=Exchange,{CONFIG}"
MB1 = f"cn=MB1,cn=InformationStore,cn=EX1,{SERVERS}"
MB2 = f"cn=MB2,cn=InformationStore,cn=EX2,{SERVERS}"
ALICE = "cn=Alice Archer,cn=Users,dc=example,dc=com"


async def found(lookup: Deferred[UserEntry | None]) -> UserEntry:
    """The user a lookup fired with; fails the test if there is none."""
    user = await lookup
    assert user is not None
    return user


@pytest_twisted.async_yield_fixture
async def demo() -> AsyncIterator[DemoDirectory]:
    """The demo directory on a free loopback port."""
    running = await start_demo_directory(reactor, LDIF)
    yield running
    await running.stop()


@pytest_twisted.async_yield_fixture
async def directory(demo: DemoDirectory) -> AsyncIterator[LdapDirectory]:
    """LdapDirectory reaching the demo directory with its default settings."""
    client = LdapDirectory(demo.settings(), reactor)
    client.start()
    yield client
    await client.stop()


def test_demo_settings_point_at_the_demo(demo: DemoDirectory) -> None:
    """settings() gives the service account, loopback URL and config_dn default."""
    settings = demo.settings()
    assert settings.url == f"ldap://127.0.0.1:{demo.port}"
    assert settings.bind_dn == "cn=feproxy,cn=Users,dc=example,dc=com"
    assert settings.base_dn == settings.config_dn == "dc=example,dc=com"
    assert demo.settings(config_dn=CONFIG).config_dn == CONFIG


@pytest_twisted.ensureDeferred
async def test_demo_finds_users_by_every_login_form(directory: LdapDirectory) -> None:
    """sAMAccountName, UPN and DOMAIN\\user all find the user."""
    for login in ("alice", "Alice@Example.com", "EXAMPLE\\alice"):
        user = await directory.find_user(login)
        assert user is not None, login
        assert (user.dn, user.login, user.home_mdb) == (ALICE, "alice", MB1)
    assert await directory.find_user("zed") is None


@pytest_twisted.ensureDeferred
async def test_demo_finds_mailboxes_by_any_address(directory: LdapDirectory) -> None:
    """Primary and secondary addresses, in any case, find the mailbox."""
    for address in ("alice@example.com", "A.Archer@example.com"):
        user = await directory.find_mailbox(address)
        assert user is not None, address
        assert (user.primary_smtp, user.alias) == ("alice@example.com", "alice")
    assert await directory.find_mailbox("nobody@example.com") is None


@pytest.mark.parametrize("login", ["*", "alice)(sAMAccountName=*", "a\\00", "a\x00"])
@pytest_twisted.ensureDeferred
async def test_demo_hostile_logins_match_nothing(directory: LdapDirectory, login: str) -> None:
    """Escaped filter metacharacters match nobody in ldaptor either."""
    assert await directory.find_user(login) is None


@pytest_twisted.ensureDeferred
async def test_demo_checks_passwords(directory: LdapDirectory) -> None:
    """Right password True, wrong or empty False, non-ASCII DN binds."""
    assert await directory.check_password(ALICE, b"alice-pw") is True
    assert await directory.check_password(ALICE, b"wrong") is False
    assert await directory.check_password(ALICE, b"") is False
    jose = await found(directory.find_user("jose"))
    assert jose.dn == "cn=Jos\u00e9 N\u00fa\u00f1ez,cn=Users,dc=example,dc=com"
    assert await directory.check_password(jose.dn, b"jose-pw") is True


@pytest_twisted.ensureDeferred
async def test_demo_user_details(directory: LdapDirectory) -> None:
    """HTTP disabled for carol, no mailbox for dave, 16-byte GUID tokens."""
    assert (await found(directory.find_user("carol"))).http_enabled is False
    assert (await found(directory.find_user("dave"))).home_mdb is None
    bob = await found(directory.find_user("bob"))
    assert bob.token == uuid.uuid5(uuid.NAMESPACE_URL, "feproxy:user:bob").bytes_le


@pytest_twisted.ensureDeferred
async def test_demo_stores_and_trees(directory: LdapDirectory) -> None:
    """Store servers, public servers and replica lists match the topology."""
    assert await directory.server_of_store(MB2) == "ex2.example.com"
    assert await directory.public_server_for_mailbox_store(MB1) == "ex1.example.com"
    assert await directory.tree_replicas("Apps") == (
        "ex2.example.com",
        "ex3.example.com",
        "ex4.example.com",
    )
    assert await directory.default_tree_replicas() == (
        "ex1.example.com",
        "ex2.example.com",
    )
    assert await directory.tree_replicas("Nope") == ()


@pytest_twisted.ensureDeferred
async def test_demo_stop_closes_the_port() -> None:
    """After stop() nothing listens on the demo's port."""
    running = await start_demo_directory(reactor, LDIF)
    await running.stop()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", running.port), timeout=1).close()
