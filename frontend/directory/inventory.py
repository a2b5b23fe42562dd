"""The front end's directory client, plus the whole listings a command needs.

``feproxy plan`` looks at every user and names trees, servers and stores as
an operator does; the front end never lists the directory.
:class:`LdapInventory` is :class:`frontend.directory.ldap.LdapDirectory` (the
same thread pool, connections, queries and user entries) with
:class:`frontend.directory.interfaces.DirectoryInventory` added.

Configuration entries are listed whole (paged) and matched by the caller,
as the front end's own tree lookups match stores to trees in Python: the
configuration holds few of them, and no filter tests a DN-valued attribute
(ldaptor, the demo's directory, compares those as plain strings).
"""

from __future__ import annotations

import warnings
from typing import Final

from twisted.internet.defer import Deferred

from frontend.directory.interfaces import ConfigEntry, DirectoryInventory, EntryKind, UserEntry
from frontend.directory.ldap import LdapDirectory, _first_text, _Raw, normalize_dn
from frontend.errors import DirectoryUnavailable

with warnings.catch_warnings():
    # ldap3 2.9.1 imports tagMap and typeMap from pyasn1's BER encoder, which
    # pyasn1 >= 0.6.1 deprecates (see frontend.directory.ldap).
    warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"ldap3(\..*)?$")
    from ldap3 import Connection

__all__ = ["LdapInventory"]

#: LDAP result codes of a search stopped early, which ldap3 does not raise:
#: timeLimitExceeded, sizeLimitExceeded, adminLimitExceeded.
_CUT_SHORT: Final = frozenset({3, 4, 11})


class LdapInventory(LdapDirectory, DirectoryInventory):
    """:class:`LdapDirectory` with the listings of :class:`DirectoryInventory`."""

    def all_users(self) -> Deferred[tuple[UserEntry, ...]]:
        """Every entry of the user class under base_dn, paged.

        Fails with DirectoryUnavailable when the directory stops the search
        early: a list of part of the users would look like all of them.
        """
        return self._ldap.run("all_users", self._all_users)

    def config_entries(self, kind: EntryKind) -> Deferred[tuple[ConfigEntry, ...]]:
        """Every folder tree, server, mailbox store or public store under config_dn."""
        return self._ldap.run("config_entries", self._config_entries, kind)

    # -- operations (worker threads) -------------------------------------------

    def _all_users(self, conn: Connection) -> tuple[UserEntry, ...]:
        base = self.settings.base_dn
        entries = self._search_all(
            conn,
            f"(objectClass={self.settings.object_classes.user})",
            self._user_attributes,
            base=base,
        )
        result = conn.result or {}
        if result.get("result") in _CUT_SHORT:
            raise DirectoryUnavailable(
                detail=f"the directory cut the list of users under {base} short: "
                f"{result.get('description')}"
            )
        return tuple(self._user_entry(dn, raw) for dn, raw in entries)

    def _config_entries(self, conn: Connection, kind: EntryKind) -> tuple[ConfigEntry, ...]:
        names = self.settings.attributes
        classes = self.settings.object_classes
        object_class, extra = {
            "tree": (classes.pf_tree, names.pf_tree_type),
            "server": (classes.server, names.dns_host_name),
            "mailbox_store": (classes.private_mdb, names.home_public_mdb),
            "public_store": (classes.public_mdb, names.owning_pf_tree),
        }[kind]
        entries = self._search_all(
            conn, f"(objectClass={object_class})", [names.common_name, extra]
        )
        found = (self._config_entry(kind, dn, raw, extra) for dn, raw in entries)
        return tuple(sorted(found, key=lambda e: (e.name.lower(), normalize_dn(e.dn))))

    def _config_entry(self, kind: EntryKind, dn: str, raw: _Raw, extra: str) -> ConfigEntry:
        name = _first_text(raw, self.settings.attributes.common_name) or ""
        value = _first_text(raw, extra)
        if kind == "server":
            return ConfigEntry(kind, dn, name, host=value.lower() if value else None)
        if kind == "tree":
            return ConfigEntry(kind, dn, name, default_tree=value == "1")
        if kind == "mailbox_store":
            return ConfigEntry(kind, dn, name, public_store=value)
        return ConfigEntry(kind, dn, name, tree=value)
