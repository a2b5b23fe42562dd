"""The directory package's seams, as Protocols: what the layers above may ask
of a directory client, what the client needs of the reactor, and the user
entry that crosses them.

:class:`frontend.directory.ldap.LdapDirectory` implements :class:`Directory`;
each consumer takes only the part it calls (the cached lookups take a
:class:`DirectorySearch`, the authenticator a :class:`PasswordCheck`, the
change watch a :class:`ConfigFingerprint`), so a test double implements the
same Protocol as the real thing without the rest.  Parameters are
positional-only: callers pass them by position, implementations name them
as they like.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorCore, IReactorFromThreads, IReactorTime

__all__ = [
    "CacheStats",
    "ConfigEntry",
    "ConfigFingerprint",
    "Directory",
    "DirectoryInventory",
    "DirectorySearch",
    "EntryKind",
    "IDirectoryReactor",
    "PasswordCheck",
    "QueryObserver",
    "UserEntry",
]


@dataclass(frozen=True)
class UserEntry:
    """What the front end needs to know about one user."""

    dn: str
    login: str  # sAMAccountName
    primary_smtp: str | None  # the "SMTP:" proxy address, without the prefix
    alias: str | None  # local part of primary_smtp
    home_mdb: str | None  # DN of the mailbox store
    http_enabled: bool  # False when a protocolSettings value begins "HTTP§0"
    token: bytes  # objectGUID, else objectSid, else b""


class DirectorySearch(Protocol):
    """The lookups behind :class:`frontend.directory.lookups.Lookups`' caches."""

    def find_user(self, login: str, /) -> Deferred[UserEntry | None]:
        """The user who logs on as ``login``, or None (unknown or ambiguous)."""

    def find_mailbox(self, smtp_address: str, /) -> Deferred[UserEntry | None]:
        """The user with the proxy address ``smtp_address``, or None."""

    def server_of_store(self, store_dn: str, /) -> Deferred[str | None]:
        """The host name of the server owning a mailbox or public store."""

    def public_server_for_mailbox_store(self, mdb_dn: str, /) -> Deferred[str | None]:
        """The host name of the server of a mailbox store's default public store."""

    def tree_replicas(self, tree: str, /) -> Deferred[tuple[str, ...]]:
        """Host names (lower case, sorted) of the replicas of a public folder tree."""

    def default_tree_replicas(self) -> Deferred[tuple[str, ...]]:
        """Host names of the replicas of the default (MAPI) tree."""


#: The kinds of configuration entries :class:`DirectoryInventory` lists.
EntryKind = Literal["tree", "server", "mailbox_store", "public_store"]


@dataclass(frozen=True)
class ConfigEntry:
    """A folder tree, server or store under config_dn, as an operator names it."""

    kind: EntryKind
    dn: str
    name: str  # cn ("" without one)
    host: str | None = None  # server: dNSHostName, lower case
    default_tree: bool = False  # tree: the default (MAPI) tree, msExchPFTreeType 1
    public_store: str | None = None  # mailbox store: msExchHomePublicMDB (a DN)
    tree: str | None = None  # public store: msExchOwningPFTree (a DN)


class DirectoryInventory(Protocol):
    """Whole listings, for commands that look at everyone (``feproxy plan``);
    the front end itself never lists the directory."""

    def all_users(self) -> Deferred[tuple[UserEntry, ...]]:
        """Every user entry under base_dn (a paged search), read as
        :meth:`DirectorySearch.find_user` reads one."""

    def config_entries(self, kind: EntryKind, /) -> Deferred[tuple[ConfigEntry, ...]]:
        """Every entry of ``kind`` under config_dn (a paged search)."""


class PasswordCheck(Protocol):
    """What :class:`frontend.directory.credentials.Authenticator` asks besides lookups."""

    def check_password(self, dn: str, password: bytes, /) -> Deferred[bool]:
        """Whether ``password`` (the octets the client sent) is right for the user at ``dn``."""


class ConfigFingerprint(Protocol):
    """What :class:`frontend.directory.watch.DirectoryWatcher` polls."""

    def config_fingerprint(self) -> Deferred[str]:
        """A digest that changes when servers, stores or trees change."""


class Directory(DirectorySearch, PasswordCheck, ConfigFingerprint, Protocol):
    """A whole directory client, started and stopped by its owner."""

    def start(self) -> None:
        """Get ready to answer (start worker threads)."""

    def stop(self) -> Deferred[None]:
        """Close connections and stop; later calls fail with DirectoryUnavailable."""


class CacheStats(Protocol):
    """What the layers above read of one lookup cache (metrics, status)."""

    @property
    def name(self) -> str:
        """The cache's name in metrics ("user", "mailbox", ...)."""

    @property
    def hits(self) -> int:
        """Lookups answered from the cache."""

    @property
    def misses(self) -> int:
        """Lookups that asked the directory."""

    def __len__(self) -> int:
        """Entries held now."""


class QueryObserver(Protocol):
    """Told of every directory query, on the reactor thread (metrics)."""

    def __call__(self, operation: str, seconds: float, *, ok: bool) -> None:
        """``operation`` took ``seconds`` and succeeded (``ok``) or failed."""


class IDirectoryReactor(IReactorCore, IReactorTime, IReactorFromThreads):
    """What the directory client needs of the reactor: its clock, a shutdown
    trigger, and calls from worker threads (every real reactor has them).

    A zope interface rather than a Protocol: Twisted's thread helpers name
    :class:`IReactorFromThreads`, and the type checker matches zope
    interfaces by name, not by shape.
    """
