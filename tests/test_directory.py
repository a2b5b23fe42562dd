"""LdapDirectory against a real slapd loaded with conf/directory.ldif."""

from __future__ import annotations

import shutil
import socket
import threading
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, cast

import ldap3
import pytest
import pytest_twisted
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ServerEndpoint
from twisted.internet.protocol import Factory
from twisted.logger import ILogObserver, globalLogPublisher
from twisted.protocols.wire import Echo
from twisted.python.threadpool import ThreadPool

import tests.support.slapd as slapd_support
from frontend.config.directory import DirectorySettings
from frontend.directory.ldap import (
    LdapDirectory,
    UserEntry,
    normalize_dn,
)
from frontend.errors import DirectoryUnavailable
from frontend.ops.reactor import global_reactor
from tests.support.slapd import BASE_DN, SERVICE_DN, SERVICE_PASSWORD, Slapd, free_port

reactor = global_reactor()

CONFIG = "cn=Configuration,dc=example,dc=com"
SERVERS = f"cn=Servers,cn=Exchange,{CONFIG}"
TREES = f"cn=Folder Hierarchies,cn=Exchange,{CONFIG}"
MB1 = f"cn=MB1,cn=InformationStore,cn=EX1,{SERVERS}"
MB2 = f"cn=MB2,cn=InformationStore,cn=EX2,{SERVERS}"
PF2 = f"cn=PF2,cn=InformationStore,cn=EX2,{SERVERS}"
APPS3 = f"cn=APPS3,cn=InformationStore,cn=EX3,{SERVERS}"
ALICE = "cn=Alice Archer,cn=Users,dc=example,dc=com"
JOSE = "cn=Jos\u00e9 N\u00fa\u00f1ez,cn=Users,dc=example,dc=com"

HOSTILE_LOGINS = [
    "*",
    "alice)(sAMAccountName=*",
    "a\\00",
    "a\x00",
    "alice*",
    "*)(|(objectClass=*",
    "EXAMPLE\\*",
    "EXAMPLE\\alice)(sAMAccountName=*",
    "(",
    "\\",
]
HOSTILE_ADDRESSES = [
    "*",
    "*@example.com",
    "alice@example.com)(objectClass=*",
    "alice@example.com\x00",
]


def guid(login: str) -> bytes:
    """The objectGUID conf/directory.ldif gives ``login`` (see its header)."""
    return uuid.uuid5(uuid.NAMESPACE_URL, f"feproxy:user:{login}").bytes_le


async def found(lookup: Deferred[UserEntry | None]) -> UserEntry:
    """The user a lookup fired with; fails the test if there is none."""
    user = await lookup
    assert user is not None
    return user


def start(settings: DirectorySettings) -> LdapDirectory:
    directory = LdapDirectory(settings, reactor)
    directory.start()
    return directory


@pytest_twisted.async_yield_fixture
async def directory(slapd: Slapd) -> AsyncIterator[LdapDirectory]:
    """A started LdapDirectory on the shared slapd."""
    client = start(slapd.settings())
    yield client
    await client.stop()


@pytest_twisted.async_yield_fixture
async def down_directory() -> AsyncIterator[LdapDirectory]:
    """An LdapDirectory whose server is not there (its port bound, not listening)."""
    reserved = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    reserved.bind(("127.0.0.1", free_port()))
    url = f"ldap://127.0.0.1:{reserved.getsockname()[1]}"
    client = start(
        DirectorySettings(
            url=url,
            bind_dn=SERVICE_DN,
            bind_password=SERVICE_PASSWORD,
            base_dn=BASE_DN,
            config_dn=BASE_DN,
            timeout=1.0,
        )
    )
    try:
        yield client
    finally:
        await client.stop()
        reserved.close()


# -- users -------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_find_user_by_sam_account_name(directory: LdapDirectory) -> None:
    """A sAMAccountName login finds the user, with mailbox and address."""
    user = await directory.find_user("alice")
    assert user == UserEntry(
        dn=ALICE,
        login="alice",
        primary_smtp="alice@example.com",
        alias="alice",
        home_mdb=MB1,
        http_enabled=True,
        token=guid("alice"),
    )


@pytest_twisted.ensureDeferred
async def test_find_user_by_user_principal_name_any_case(
    directory: LdapDirectory,
) -> None:
    """A UPN login, in any case, finds the user."""
    user = await directory.find_user("Bob@EXAMPLE.com")
    assert user is not None
    assert (user.login, user.home_mdb) == ("bob", MB2)


@pytest_twisted.ensureDeferred
async def test_find_user_by_domain_backslash_user(directory: LdapDirectory) -> None:
    """DOMAIN\\user finds the user when DOMAIN is the configured one (any case)."""
    assert (await found(directory.find_user("EXAMPLE\\alice"))).login == "alice"
    assert (await found(directory.find_user("example\\Alice"))).login == "alice"
    assert await directory.find_user("OTHER\\alice") is None
    assert await directory.find_user("EXAMPLE\\") is None


@pytest_twisted.ensureDeferred
async def test_domain_logins_refused_without_netbios_domain(slapd: Slapd) -> None:
    """Without a configured NetBIOS domain, DOMAIN\\user matches nobody."""
    client = start(slapd.settings(netbios_domain=None))
    try:
        assert await client.find_user("EXAMPLE\\alice") is None
        assert (await found(client.find_user("alice"))).login == "alice"
    finally:
        await client.stop()


@pytest_twisted.ensureDeferred
async def test_find_mailbox_by_primary_address(directory: LdapDirectory) -> None:
    """The primary SMTP address finds the mailbox."""
    user = await directory.find_mailbox("bob@example.com")
    assert user is not None
    assert (user.login, user.alias, user.home_mdb) == ("bob", "bob", MB2)


@pytest_twisted.ensureDeferred
async def test_find_mailbox_by_secondary_address_any_case(
    directory: LdapDirectory,
) -> None:
    """Secondary addresses, in any case, find the same mailbox."""
    for address in (
        "a.archer@example.com",
        "Alice@Corp.Example.NET",
        "ALICE@example.com",
    ):
        user = await directory.find_mailbox(address)
        assert user is not None, address
        assert (user.login, user.primary_smtp) == ("alice", "alice@example.com")


@pytest_twisted.ensureDeferred
async def test_unknown_login_or_address_gives_none(directory: LdapDirectory) -> None:
    """Unknown logins and addresses, and empty ones, give None."""
    assert await directory.find_user("zed") is None
    assert await directory.find_user("") is None
    assert await directory.find_mailbox("zed@example.com") is None
    assert await directory.find_mailbox("alice@example.org") is None
    assert await directory.find_mailbox("  ") is None


@pytest.mark.parametrize("login", HOSTILE_LOGINS)
@pytest_twisted.ensureDeferred
async def test_hostile_login_matches_nothing(directory: LdapDirectory, login: str) -> None:
    """Filter metacharacters in a login are escaped: they match nobody."""
    assert await directory.find_user(login) is None


@pytest.mark.parametrize("address", HOSTILE_ADDRESSES)
@pytest_twisted.ensureDeferred
async def test_hostile_address_matches_nothing(directory: LdapDirectory, address: str) -> None:
    """Filter metacharacters in an address are escaped: they match nobody."""
    assert await directory.find_mailbox(address) is None


@pytest_twisted.ensureDeferred
async def test_http_disabled_for_carol_only(directory: LdapDirectory) -> None:
    """protocolSettings HTTP§0 disables HTTP (carol); HTTP§1 does not (alice)."""
    assert (await found(directory.find_user("carol"))).http_enabled is False
    assert (await found(directory.find_user("alice"))).http_enabled is True
    assert (await found(directory.find_user("bob"))).http_enabled is True


@pytest_twisted.ensureDeferred
async def test_dave_has_no_mailbox(directory: LdapDirectory) -> None:
    """A user without homeMDB or proxyAddresses has no mailbox or alias."""
    user = await directory.find_user("dave")
    assert user is not None
    assert (user.home_mdb, user.primary_smtp, user.alias) == (None, None, None)
    assert await directory.find_mailbox("dave@example.com") is None


@pytest_twisted.ensureDeferred
async def test_non_ascii_user_loads_and_binds(directory: LdapDirectory) -> None:
    """José Núñez's non-ASCII DN comes back intact and binds."""
    user = await directory.find_user("jose")
    assert user is not None
    assert user.dn == JOSE
    assert (user.primary_smtp, user.home_mdb) == ("jose@example.com", MB2)
    assert await directory.check_password(user.dn, b"jose-pw") is True


@pytest_twisted.ensureDeferred
async def test_token_is_the_raw_object_guid(directory: LdapDirectory) -> None:
    """The token is objectGUID's 16 raw bytes, distinct per user."""
    tokens = {}
    for login in ("alice", "bob", "carol", "dave", "jose"):
        user = await found(directory.find_user(login))
        assert user.token == guid(login)
        assert len(user.token) == 16
        tokens[login] = user.token
    assert len(set(tokens.values())) == 5


@pytest_twisted.ensureDeferred
async def test_ambiguous_login_is_not_found(
    slapd_factory: Callable[..., Slapd],
) -> None:
    """Two users with one login: neither is returned."""
    twins = "".join(
        f"dn: cn=Twin {n},cn=Users,dc=example,dc=com\n"
        "objectClass: inetOrgPerson\nobjectClass: user\n"
        f"cn: Twin {n}\nsn: Twin\nsAMAccountName: twin\n"
        "proxyAddresses: SMTP:twin@example.com\n\n"
        for n in (1, 2)
    )
    client = start(slapd_factory(extra_ldif=twins).settings())
    try:
        assert await client.find_user("twin") is None
        assert await client.find_mailbox("twin@example.com") is None
        assert (await found(client.find_user("alice"))).login == "alice"
    finally:
        await client.stop()


# -- passwords ---------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_check_password_right_wrong_and_empty(directory: LdapDirectory) -> None:
    """The right password binds; a wrong or empty one does not."""
    assert await directory.check_password(ALICE, b"alice-pw") is True
    assert await directory.check_password(ALICE, b"bob-pw") is False
    assert await directory.check_password(ALICE, b"") is False
    assert await directory.check_password("cn=Nobody,cn=Users,dc=example,dc=com", b"x") is False


@pytest_twisted.ensureDeferred
async def test_empty_password_never_binds(
    down_directory: LdapDirectory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An empty password is refused without a bind, even with the directory down."""
    binds: list[str] = []
    original = ldap3.Connection.bind

    def recording_bind(self: ldap3.Connection, read_server_info: bool = True) -> bool:  # noqa: FBT001, FBT002 - ldap3's signature
        binds.append(str(self.user))
        return bool(original(self, read_server_info))

    monkeypatch.setattr(ldap3.Connection, "bind", recording_bind)
    assert await down_directory.check_password(ALICE, b"") is False
    assert binds == []


# -- stores and trees --------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_server_of_store(directory: LdapDirectory) -> None:
    """A store's owning server's dNSHostName."""
    assert await directory.server_of_store(MB1) == "ex1.example.com"
    assert await directory.server_of_store(PF2) == "ex2.example.com"
    assert await directory.server_of_store(APPS3) == "ex3.example.com"


@pytest_twisted.ensureDeferred
async def test_public_server_for_mailbox_store(directory: LdapDirectory) -> None:
    """homeMDB -> msExchHomePublicMDB -> owning server."""
    assert await directory.public_server_for_mailbox_store(MB1) == "ex1.example.com"
    assert await directory.public_server_for_mailbox_store(MB2) == "ex2.example.com"


@pytest_twisted.ensureDeferred
async def test_unknown_store_gives_none(directory: LdapDirectory) -> None:
    """A store DN that is absent or malformed gives None."""
    missing = f"cn=MB9,cn=InformationStore,cn=EX1,{SERVERS}"
    assert await directory.server_of_store(missing) is None
    assert await directory.public_server_for_mailbox_store(missing) is None
    assert await directory.server_of_store("not a dn") is None
    assert await directory.server_of_store("") is None


@pytest_twisted.ensureDeferred
async def test_tree_replicas_by_name_or_dn(directory: LdapDirectory) -> None:
    """Apps is served by ex2, ex3 and ex4, named by cn or DN in any case."""
    expected = ("ex2.example.com", "ex3.example.com", "ex4.example.com")
    assert await directory.tree_replicas("Apps") == expected
    assert await directory.tree_replicas("apps") == expected
    assert await directory.tree_replicas(f"cn=Apps,{TREES}") == expected
    assert await directory.tree_replicas(f"CN=APPS, {TREES.upper()}") == expected
    assert await directory.tree_replicas("Public Folders") == (
        "ex1.example.com",
        "ex2.example.com",
    )


@pytest_twisted.ensureDeferred
async def test_unknown_tree_has_no_replicas(directory: LdapDirectory) -> None:
    """An unknown tree, by name or DN, gives ()."""
    assert await directory.tree_replicas("Nope") == ()
    assert await directory.tree_replicas(f"cn=Nope,{TREES}") == ()
    assert await directory.tree_replicas("*") == ()
    assert await directory.tree_replicas("") == ()


@pytest_twisted.ensureDeferred
async def test_default_tree_replicas(directory: LdapDirectory) -> None:
    """The tree of type 1 (Public Folders) is served by ex1 and ex2."""
    assert await directory.default_tree_replicas() == (
        "ex1.example.com",
        "ex2.example.com",
    )


@pytest_twisted.ensureDeferred
async def test_config_dn_may_be_the_base_dn(slapd: Slapd) -> None:
    """With config_dn = base_dn (the default) trees are still found."""
    client = start(slapd.settings(config_dn=BASE_DN))
    try:
        assert await client.default_tree_replicas() == (
            "ex1.example.com",
            "ex2.example.com",
        )
        assert (await found(client.find_user("alice"))).login == "alice"
    finally:
        await client.stop()


@pytest_twisted.ensureDeferred
async def test_paged_search_returns_more_than_the_size_limit(
    slapd_factory: Callable[..., Slapd],
) -> None:
    """600 public stores in one tree (over slapd's 500 limit) are all read."""
    bulk = f"cn=Bulk,{CONFIG}"
    parts = [
        f"dn: cn=Big,{TREES}\nobjectClass: msExchPFTree\ncn: Big\nmsExchPFTreeType: 0\n\n",
        f"dn: {bulk}\nobjectClass: container\ncn: Bulk\n\n",
    ]
    # The last store is the only one on ex1: missing a page would lose it.
    for n in range(600):
        server = 1 if n == 599 else 2 + n % 3
        parts.append(
            f"dn: cn=BIG{n},{bulk}\nobjectClass: msExchPublicMDB\ncn: BIG{n}\n"
            f"msExchOwningServer: cn=EX{server},{SERVERS}\n"
            f"msExchOwningPFTree: cn=Big,{TREES}\n\n"
        )
    instance = slapd_factory(extra_ldif="".join(parts))
    # Unpaged, slapd stops at 500 entries (sizeLimitExceeded).
    conn = ldap3.Connection(instance.url, SERVICE_DN, SERVICE_PASSWORD, auto_bind=True)
    try:
        conn.search(CONFIG, "(objectClass=msExchPublicMDB)", attributes=["cn"])
        assert (conn.result["result"], len(conn.entries)) == (4, 500)
    finally:
        conn.unbind()
    client = start(instance.settings())
    try:
        assert await client.tree_replicas("Big") == (
            "ex1.example.com",
            "ex2.example.com",
            "ex3.example.com",
            "ex4.example.com",
        )
    finally:
        await client.stop()


# -- failures and threads ----------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_directory_down_raises_directory_unavailable(
    down_directory: LdapDirectory,
) -> None:
    """Every lookup fails with DirectoryUnavailable when nothing answers."""
    lookups: list[Callable[[], Deferred[Any]]] = [
        lambda: down_directory.find_user("alice"),
        lambda: down_directory.find_mailbox("alice@example.com"),
        lambda: down_directory.check_password(ALICE, b"alice-pw"),
        lambda: down_directory.server_of_store(MB1),
        lambda: down_directory.public_server_for_mailbox_store(MB1),
        lambda: down_directory.tree_replicas("Apps"),
        down_directory.default_tree_replicas,
    ]
    for lookup in lookups:
        with pytest.raises(DirectoryUnavailable) as caught:
            await lookup()
        error = caught.value
        assert error.status == 503
        assert error.reason == DirectoryUnavailable.reason  # no internal detail
        assert down_directory.settings.url in error.detail


@pytest_twisted.ensureDeferred
async def test_server_speaking_garbage_raises_directory_unavailable() -> None:
    """A "server" that echoes the request back makes the directory unavailable."""
    factory = Factory.forProtocol(Echo)
    listener = await TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(factory)
    client = start(
        DirectorySettings(
            url=f"ldap://127.0.0.1:{listener.getHost().port}",
            bind_dn=SERVICE_DN,
            bind_password=SERVICE_PASSWORD,
            base_dn=BASE_DN,
            config_dn=BASE_DN,
            timeout=1.0,
        )
    )
    try:
        with pytest.raises(DirectoryUnavailable):
            await client.find_user("alice")
        with pytest.raises(DirectoryUnavailable):
            await client.check_password(ALICE, b"alice-pw")
    finally:
        await client.stop()
        await listener.stopListening()


@pytest_twisted.ensureDeferred
async def test_wrong_service_password_raises_directory_unavailable(
    slapd: Slapd,
) -> None:
    """A service account that cannot bind makes the directory unavailable."""
    client = start(slapd.settings(bind_password="wrong"))
    try:
        with pytest.raises(DirectoryUnavailable):
            await client.find_user("alice")
    finally:
        await client.stop()


@pytest_twisted.ensureDeferred
async def test_reconnects_after_slapd_restart(
    slapd_factory: Callable[..., Slapd],
) -> None:
    """After slapd restarts, the next lookup succeeds on a fresh connection."""
    instance = slapd_factory()
    client = start(instance.settings(pool_size=1))
    events: list[dict[str, Any]] = []
    observer = cast(ILogObserver, events.append)
    globalLogPublisher.addObserver(observer)
    try:
        assert (await found(client.find_user("alice"))).login == "alice"
        instance.stop()  # the pooled connection is now dead
        instance.start()  # on the same port, with the same data
        assert (await found(client.find_user("bob"))).login == "bob"
        # It was retried: the failure on the old connection was logged.
        assert any("reconnecting" in e.get("log_format", "") for e in events)
        assert await client.tree_replicas("Apps") != ()

        instance.stop()
        with pytest.raises(DirectoryUnavailable):
            await client.find_user("alice")
        instance.start()
        assert (await found(client.find_user("alice"))).login == "alice"
    finally:
        globalLogPublisher.removeObserver(observer)
        await client.stop()


@pytest_twisted.ensureDeferred
async def test_ldap_work_runs_off_the_reactor_thread(
    directory: LdapDirectory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every ldap3 search and bind runs in a worker thread, not the reactor's."""
    threads: list[threading.Thread] = []
    for name in ("search", "bind"):
        original = getattr(ldap3.Connection, name)

        def wrapper(
            self: ldap3.Connection,
            *args: object,
            __original: Callable[..., object] = original,
            **kw: object,
        ) -> object:
            threads.append(threading.current_thread())
            return __original(self, *args, **kw)

        monkeypatch.setattr(ldap3.Connection, name, wrapper)
    user = await found(directory.find_user("alice"))
    await directory.check_password(user.dn, b"alice-pw")
    await directory.tree_replicas("Apps")
    await directory.public_server_for_mailbox_store(MB1)
    assert threads
    assert threading.main_thread() not in threads
    assert threading.current_thread() is threading.main_thread()


@pytest_twisted.ensureDeferred
async def test_stopped_directory_raises_directory_unavailable(slapd: Slapd) -> None:
    """Lookups after stop() fail with DirectoryUnavailable; stop is idempotent."""
    client = start(slapd.settings())
    assert (await found(client.find_user("alice"))).login == "alice"
    await client.stop()
    await client.stop()
    with pytest.raises(DirectoryUnavailable):
        await client.find_user("alice")
    with pytest.raises(DirectoryUnavailable):
        await client.check_password(ALICE, b"alice-pw")


def test_normalize_dn_folds_case_and_spacing() -> None:
    """DNs that differ only in case and spaces normalise alike."""
    assert normalize_dn("CN=Apps, CN=Folder Hierarchies,DC=Example") == normalize_dn(
        "cn=apps,cn=folder hierarchies,dc=example"
    )
    assert normalize_dn("cn=a,dc=x") != normalize_dn("cn=b,dc=x")


@pytest_twisted.ensureDeferred
async def test_injected_thread_pool_is_used_and_left_running(slapd: Slapd) -> None:
    """An injected pool does the work and is left running; IService works."""
    pool = ThreadPool(minthreads=0, maxthreads=1, name="injected")
    pool.start()
    try:
        threads: list[str] = []
        client = LdapDirectory(slapd.settings(), reactor, threadpool=pool)
        original = client._search_user

        def recording(conn: ldap3.Connection, value_filter: str) -> UserEntry | None:
            threads.append(threading.current_thread().name)
            return original(conn, value_filter)

        client._search_user = recording  # type: ignore[method-assign]  # records the thread
        client.startService()
        assert client.running
        assert (await found(client.find_user("alice"))).login == "alice"
        assert threads == ["PoolThread-injected-0"]
        await client.stopService()
        assert pool.started
    finally:
        pool.stop()


def test_missing_slapd_fails_with_install_hint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without slapd the harness says to run scripts/install-slapd."""
    monkeypatch.setattr(shutil, "which", lambda *_a, **_k: None)  # as tests.support.slapd sees it
    with pytest.raises(slapd_support.SlapdNotFound, match="scripts/install-slapd"):
        slapd_support.Slapd(tmp_path)
