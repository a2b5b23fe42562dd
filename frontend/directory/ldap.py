"""The directory client: users, mailboxes, stores and public folder trees.

ldap3 blocks, so every public method of :class:`LdapDirectory` runs its LDAP
work with ``deferToThreadPool`` on a bounded thread pool of the directory's
own and returns a Deferred.  Each worker borrows a bound service-account
connection from a small pool; a reused connection that fails (the server
restarted) is dropped with all idle ones and the work is retried once on a
fresh connection, after which the Deferred fails with
:class:`frontend.errors.DirectoryUnavailable` (``detail`` for the log).

The queries work unchanged against Active Directory, OpenLDAP (with
``conf/schema/exchange.schema``) and ldaptor (the demo directory): no filter
tests a binary or DN-valued attribute, DNs are compared in Python after
:func:`normalize_dn`, and values are read raw.  Nothing is cached here.
"""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import Deferred, succeed
from twisted.logger import Logger
from twisted.python.threadpool import ThreadPool

from frontend.config.directory import DirectorySettings
from frontend.directory.bind import simple_bind
from frontend.directory.interfaces import (
    Directory,
    IDirectoryReactor,
    QueryObserver,
    UserEntry,
)
from frontend.directory.pool import FAILURES, LdapPool

with warnings.catch_warnings():
    # ldap3 2.9.1 imports tagMap and typeMap from pyasn1's BER encoder, which
    # pyasn1 >= 0.6.1 deprecates; the warning comes once, at import time,
    # and under warnings-as-errors (the test suite) the import would fail.
    warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"ldap3(\..*)?$")
    from ldap3 import BASE, SUBTREE, Connection
    from ldap3.core.exceptions import (
        LDAPInvalidDnError,
        LDAPInvalidDNSyntaxResult,
        LDAPNoSuchObjectResult,
    )
    from ldap3.utils.conv import escape_filter_chars
    from ldap3.utils.dn import parse_dn

__all__ = [
    "HTTP_DISABLED_PREFIX",
    "LdapDirectory",
    "UserEntry",  # defined in frontend.directory.interfaces
    "normalize_dn",
]

log = Logger()

#: A ``protocolSettings`` value beginning with this disables HTTP access.
HTTP_DISABLED_PREFIX = "HTTP\u00a70"

#: Page size for searches that may return many entries (slapd caps a
#: search at 500 entries unless it is paged, AD at 1000).
PAGE_SIZE = 200

_TIME_LIMIT_EXCEEDED = 3  # LDAP result codes that ldap3 does not raise
_SIZE_LIMIT_EXCEEDED = 4


# Raw attributes as read: attribute name (lower case) -> values.
_Raw = Mapping[str, Sequence[bytes]]


def normalize_dn(dn: str) -> str:
    """Return a form of ``dn`` for comparisons: case and spacing folded.

    A string that does not parse as a DN is folded as a whole.
    """
    try:
        parts = parse_dn(dn, escape=False, strip=True)
    except LDAPInvalidDnError:
        return dn.strip().casefold()
    out: list[str] = []
    for attr, value, separator in parts:
        out.append(f"{attr.strip().casefold()}={value.strip().casefold()}")
        if separator:
            out.append(separator)
    return "".join(out)


def _text(value: bytes) -> str:
    return value.decode("utf-8", "replace")


def _texts(raw: _Raw, name: str) -> list[str]:
    return [_text(v) for v in raw.get(name.lower(), ())]


def _first_text(raw: _Raw, name: str) -> str | None:
    for value in _texts(raw, name):
        if value.strip():
            return value.strip()
    return None


def _first_bytes(raw: _Raw, name: str) -> bytes:
    for value in raw.get(name.lower(), ()):
        if value:
            return bytes(value)
    return b""


def _entries(response: Iterable[dict[str, Any]] | None) -> list[tuple[str, _Raw]]:
    """The entries of an ldap3 response: (DN, raw attributes by lower name)."""
    found: list[tuple[str, _Raw]] = []
    for item in response or ():
        if item.get("type") != "searchResEntry":
            continue  # continuation references (AD) and the like
        raw = {
            str(name).lower(): [bytes(v) for v in values]
            for name, values in (item.get("raw_attributes") or {}).items()
        }
        found.append((str(item["dn"]), raw))
    return found


class LdapDirectory(Service, Directory):
    """Directory lookups over ldap3, run off the reactor thread.

    ``threadpool`` may be injected (its owner then starts and stops it);
    otherwise the directory makes one of ``settings.pool_size`` threads,
    started and stopped by :meth:`start` and :meth:`stop` (or as an
    ``IService``).  :meth:`start` also arranges a stop at reactor shutdown.
    """

    def __init__(
        self,
        settings: DirectorySettings,
        reactor: IDirectoryReactor,
        threadpool: ThreadPool | None = None,
        observe: QueryObserver | None = None,
    ) -> None:
        """``observe(operation, seconds, ok)`` is told of every query (metrics)."""
        self.settings = settings
        self._ldap = LdapPool(settings, reactor, threadpool)
        self._ldap.observe = observe
        names = settings.attributes
        self._user_attributes = [
            names.sam_account_name,
            names.user_principal_name,
            names.proxy_addresses,
            names.home_mdb,
            names.home_server_name,
            names.protocol_settings,
            names.object_guid,
            names.object_sid,
        ]

    def start(self) -> None:
        """Start the thread pool (when it is the directory's own)."""
        self._ldap.start()

    def stop(self) -> Deferred[None]:
        """Close the idle connections and stop the thread pool (if owned).

        Idempotent.  Lookups made after this fail with DirectoryUnavailable.
        """
        return self._ldap.stop()

    def startService(self) -> None:
        Service.startService(self)
        self.start()

    def stopService(self) -> Deferred[None]:
        Service.stopService(self)
        return self.stop()

    # -- public lookups --------------------------------------------------------

    def find_user(self, login: str) -> Deferred[UserEntry | None]:
        """The user who logs on as ``login``: sAMAccountName, UPN or DOMAIN\\user.

        Fires with None when no user, or more than one, matches.
        """
        value_filter = self._login_filter(login)
        if value_filter is None:
            return succeed(None)
        return self._ldap.run("find_user", self._search_user, value_filter)

    def find_mailbox(self, smtp_address: str) -> Deferred[UserEntry | None]:
        """The user whose proxyAddresses hold ``smtp:<smtp_address>`` (any case).

        The entry may lack ``home_mdb`` (a mail-enabled user without a
        mailbox): the caller decides what that means.
        """
        address = smtp_address.strip()
        if not address:
            return succeed(None)
        names = self.settings.attributes
        value_filter = f"({names.proxy_addresses}=smtp:{escape_filter_chars(address)})"
        return self._ldap.run("find_mailbox", self._search_user, value_filter)

    def check_password(self, dn: str, password: bytes) -> Deferred[bool]:
        """Whether ``password`` is right for ``dn``, by a simple bind as ``dn``.

        The password's octets are sent unchanged (no SASLprep).  An empty
        password is refused without any bind (AD would take it for an
        anonymous bind and succeed).  False when the directory refuses the
        credentials (:mod:`frontend.directory.bind`, logged at debug level);
        fails with DirectoryUnavailable when the directory cannot answer or
        fails otherwise.
        """
        if not password or not dn:
            return succeed(False)
        return self._ldap.defer("check_password", self._bind_as, dn, password)

    def server_of_store(self, store_dn: str) -> Deferred[str | None]:
        """The host name (dNSHostName) of the server owning a store."""
        if not store_dn.strip():
            return succeed(None)
        return self._ldap.run("server_of_store", self._host_of_store, store_dn)

    def public_server_for_mailbox_store(self, mdb_dn: str) -> Deferred[str | None]:
        """The host name of the server of a mailbox store's default public store."""
        if not mdb_dn.strip():
            return succeed(None)
        return self._ldap.run("public_server_for_mailbox_store", self._public_host_of_mdb, mdb_dn)

    def tree_replicas(self, tree: str) -> Deferred[tuple[str, ...]]:
        """Host names of the servers with a public store serving ``tree``.

        ``tree`` is the tree's cn ("Apps") or its DN.  The names are in lower
        case, sorted and without duplicates; an unknown tree gives ().
        """
        tree = tree.strip()
        if not tree:
            return succeed(())
        return self._ldap.run("tree_replicas", self._replicas_of_named_tree, tree)

    def default_tree_replicas(self) -> Deferred[tuple[str, ...]]:
        """Host names of the servers holding the default (MAPI) tree."""
        return self._ldap.run("default_tree_replicas", self._replicas_of_default_tree)

    def config_fingerprint(self) -> Deferred[str]:
        """A digest of every entry under config_dn with its change attribute.

        It changes when an entry there is added, deleted or modified (its
        ``change_attribute`` moves), so comparing two polls tells whether
        servers, stores or trees may have changed.  Deletions leave no
        modifyTimestamp behind, which is why every entry is listed rather
        than only those changed since the last poll.
        """
        return self._ldap.run("config_fingerprint", self._config_fingerprint)

    # -- operations (worker threads) -------------------------------------------

    def _config_fingerprint(self, conn: Connection) -> str:
        attribute = self.settings.change_attribute
        entries = self._search_all(conn, "(objectClass=*)", [attribute])
        digest = hashlib.sha256()
        for dn, raw in sorted((normalize_dn(dn), raw) for dn, raw in entries):
            digest.update(dn.encode("utf-8") + b"\0")
            for value in sorted(raw.get(attribute.lower(), ())):
                digest.update(value + b"\0")
            digest.update(b"\1")
        return digest.hexdigest()

    def _bind_as(self, dn: str, password: bytes) -> bool:
        conn = self._ldap.connection(dn, password)
        try:
            refused = simple_bind(conn)
        except FAILURES as error:
            raise self._ldap.unavailable("bind", error) from error
        finally:
            self._ldap.close(conn)
        if refused is not None:
            self._ldap.debug("bind as {dn} refused: {reason}", dn=dn, reason=refused)
        return refused is None

    def _login_filter(self, login: str) -> str | None:
        login = login.strip()
        if not login:
            return None
        names = self.settings.attributes
        if "\\" in login:
            domain, _, user = login.partition("\\")
            expected = self.settings.netbios_domain
            if not user or not expected or domain.casefold() != expected.casefold():
                return None
            return f"({names.sam_account_name}={escape_filter_chars(user)})"
        value = escape_filter_chars(login)
        return f"(|({names.sam_account_name}={value})({names.user_principal_name}={value}))"

    def _search_user(self, conn: Connection, value_filter: str) -> UserEntry | None:
        user_filter = f"(&(objectClass={self.settings.object_classes.user}){value_filter})"
        # Two entries are enough to know the login is ambiguous (the search
        # then ends with sizeLimitExceeded, which ldap3 does not raise).
        conn.search(
            self.settings.base_dn,
            user_filter,
            SUBTREE,
            attributes=self._user_attributes,
            size_limit=2,
        )
        entries = _entries(conn.response)
        if len(entries) > 1:
            self._ldap.warn(
                "more than one user matches {filter}; treated as not found",
                filter=user_filter,
            )
            return None
        if not entries:
            return None
        return self._user_entry(*entries[0])

    def _user_entry(self, dn: str, raw: _Raw) -> UserEntry:
        names = self.settings.attributes
        primary = None
        for value in _texts(raw, names.proxy_addresses):
            if value.startswith("SMTP:") and value[5:].strip():
                primary = value[5:].strip()
                break
        settings = _texts(raw, names.protocol_settings)
        http_disabled = any(v.upper().startswith(HTTP_DISABLED_PREFIX) for v in settings)
        token = _first_bytes(raw, names.object_guid) or _first_bytes(raw, names.object_sid)
        return UserEntry(
            dn=dn,
            login=_first_text(raw, names.sam_account_name) or "",
            primary_smtp=primary,
            alias=primary.rsplit("@", 1)[0] if primary else None,
            home_mdb=_first_text(raw, names.home_mdb),
            http_enabled=not http_disabled,
            token=token,
        )

    def _read(self, conn: Connection, dn: str, attributes: list[str]) -> _Raw | None:
        """The raw attributes of the entry at ``dn``, or None if it is absent."""
        try:
            conn.search(dn, "(objectClass=*)", BASE, attributes=attributes)
        except (LDAPNoSuchObjectResult, LDAPInvalidDNSyntaxResult, LDAPInvalidDnError):
            self._ldap.warn("directory entry {dn} does not exist", dn=dn)
            return None
        entries = _entries(conn.response)
        return entries[0][1] if entries else None

    def _search_all(
        self,
        conn: Connection,
        search_filter: str,
        attributes: list[str],
        base: str | None = None,
    ) -> list[tuple[str, _Raw]]:
        """Every entry under ``base`` (config_dn) matching ``search_filter``, paged."""
        base = self.settings.config_dn if base is None else base
        response = conn.extend.standard.paged_search(
            base,
            search_filter,
            SUBTREE,
            attributes=attributes,
            paged_size=PAGE_SIZE,
            generator=False,
        )
        result = conn.result or {}
        if result.get("result") in (_SIZE_LIMIT_EXCEEDED, _TIME_LIMIT_EXCEEDED):
            # ldap3 does not raise these: the list is incomplete.
            self._ldap.warn(
                "paged search {filter} under {base} was cut short: {description}",
                filter=search_filter,
                base=base,
                description=result.get("description"),
            )
        return _entries(response)

    def _follow(self, conn: Connection, dn: str | None, attribute: str) -> str | None:
        """The first value of ``attribute`` of the entry at ``dn`` (a DN or name)."""
        if not dn:
            return None
        raw = self._read(conn, dn, [attribute])
        value = _first_text(raw, attribute) if raw is not None else None
        if raw is not None and value is None:
            self._ldap.warn("directory entry {dn} has no {attr}", dn=dn, attr=attribute)
        return value

    def _host_of_server(self, conn: Connection, server_dn: str | None) -> str | None:
        host = self._follow(conn, server_dn, self.settings.attributes.dns_host_name)
        return host.lower() if host else None

    def _host_of_store(self, conn: Connection, store_dn: str | None) -> str | None:
        names = self.settings.attributes
        return self._host_of_server(conn, self._follow(conn, store_dn, names.owning_server))

    def _public_host_of_mdb(self, conn: Connection, mdb_dn: str) -> str | None:
        names = self.settings.attributes
        return self._host_of_store(conn, self._follow(conn, mdb_dn, names.home_public_mdb))

    def _replicas_of_named_tree(self, conn: Connection, tree: str) -> tuple[str, ...]:
        if "=" in tree:
            return self._replicas(conn, {normalize_dn(tree)})
        names = self.settings.attributes
        classes = self.settings.object_classes
        trees = self._search_all(
            conn,
            f"(&(objectClass={classes.pf_tree})({names.common_name}={escape_filter_chars(tree)}))",
            [names.common_name],
        )
        return self._replicas(conn, {normalize_dn(dn) for dn, _ in trees})

    def _replicas_of_default_tree(self, conn: Connection) -> tuple[str, ...]:
        names = self.settings.attributes
        classes = self.settings.object_classes
        trees = self._search_all(
            conn,
            f"(&(objectClass={classes.pf_tree})({names.pf_tree_type}=1))",
            [names.pf_tree_type],
        )
        if len(trees) > 1:
            self._ldap.warn("{count} default folder trees; using them all", count=len(trees))
        return self._replicas(conn, {normalize_dn(dn) for dn, _ in trees})

    def _replicas(self, conn: Connection, tree_dns: set[str]) -> tuple[str, ...]:
        """Host names of the owners of the public stores serving ``tree_dns``.

        Stores are matched to trees here rather than in the filter: DN-valued
        filters are not portable (ldaptor compares them as plain strings).
        """
        if not tree_dns:
            return ()
        names = self.settings.attributes
        stores = self._search_all(
            conn,
            f"(objectClass={self.settings.object_classes.public_mdb})",
            [names.owning_pf_tree, names.owning_server],
        )
        servers: dict[str, str] = {}
        for _dn, raw in stores:
            tree_dn = _first_text(raw, names.owning_pf_tree)
            server_dn = _first_text(raw, names.owning_server)
            if tree_dn and server_dn and normalize_dn(tree_dn) in tree_dns:
                servers.setdefault(normalize_dn(server_dn), server_dn)
        hosts = {self._host_of_server(conn, dn) for dn in servers.values()}
        return tuple(sorted(h for h in hosts if h))
