"""``feproxy plan``'s core: who moves, before it happens.

Users whose public-folder server changes lose their read/unread state and
their application sessions, so they should be told before a replica is
added to or removed from a tree, or before a mailbox store is given another
public store.  ``feproxy plan`` reads the real users from the directory of a
configuration file, through the front end's own directory client
(:class:`frontend.directory.inventory.LdapInventory`), places each of them
with the front end's own decision before and after the change
(:func:`frontend.routing.movement.placements`), and lists who moves where.

Which users: those the front end routes to a public folder.  With
authentication on (the usual case) that is every user entry whose HTTP
access is enabled (the router refuses the others with 403), with or
without a mailbox, as the router does; each is placed by the token the
router hashes (:func:`frontend.routing.decisions.user_token`).  On the
default tree a user whose mailbox store has a public store goes to that
store's server first, whatever the replicas.  Without authentication no
request is balanced: every entry goes to the first replica in name order.

This module gathers the facts and decides; :mod:`frontend.ops.plan_output`
writes the result and :mod:`frontend.ops.plan` is the command line.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Final, Literal, Protocol

from frontend.config import Config
from frontend.directory.interfaces import (
    ConfigEntry,
    DirectoryInventory,
    DirectorySearch,
    EntryKind,
    UserEntry,
)
from frontend.directory.ldap import normalize_dn
from frontend.routing.decisions import user_token
from frontend.routing.hashing import policy_named
from frontend.routing.movement import MoveSummary, Placement, placements

__all__ = [
    "DEFAULT_TREE",
    "Plan",
    "PlanDirectory",
    "PlanError",
    "PlannedUser",
    "ReplicaChange",
    "StoreChange",
    "StorePlan",
    "make_plan",
]

#: What ``--tree`` (like a vdir's ``tree``) calls the default (MAPI) tree.
DEFAULT_TREE: Final = "default"

#: A host name as ``--add`` takes one that the directory does not know.
_HOST_NAME: Final = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?")

_KIND_NAMES: Final[dict[EntryKind, str]] = {
    "tree": "public folder tree",
    "server": "server",
    "mailbox_store": "mailbox store",
    "public_store": "public store",
}


class PlanError(Exception):
    """The plan cannot be made; the message is the one line the operator reads."""


class PlanDirectory(DirectorySearch, DirectoryInventory, Protocol):
    """What a plan reads: the front end's lookups and the whole listings."""


@dataclass(frozen=True)
class ReplicaChange:
    """Servers given (``add``) or losing (``remove``) a replica of ``tree``
    (a tree's name or DN, or ``default``)."""

    tree: str
    add: tuple[str, ...] = ()
    remove: tuple[str, ...] = ()


@dataclass(frozen=True)
class StoreChange:
    """A mailbox store (name or DN) given another default public store."""

    store: str
    public_store: str


@dataclass(frozen=True)
class StorePlan:
    """The mailbox store of a :class:`StoreChange`, found in the directory."""

    dn: str
    name: str
    public_store_before: str | None  # DN
    public_store_after: str  # DN
    server_before: str | None  # the host the front end sends its users to first
    server_after: str | None


@dataclass(frozen=True)
class PlannedUser:
    """One user and where the front end sends them first, before and after."""

    login: str
    dn: str
    mail: str | None
    token: bytes | None  # what is hashed; None: the front end does not authenticate
    placement: Placement

    @property
    def moves(self) -> bool:
        return self.placement.moves


@dataclass(frozen=True)
class Plan:
    """Who moves where when ``change`` is made."""

    change: Literal["replicas", "public_store"]
    tree: str  # as given, or "default"
    policy: str
    balanced: bool  # users are hashed (the front end authenticates)
    before: tuple[str, ...]  # the replica list now
    after: tuple[str, ...]  # with the change
    added: tuple[str, ...]
    removed: tuple[str, ...]
    users: tuple[PlannedUser, ...]
    summary: MoveSummary
    store: StorePlan | None = None
    notes: tuple[str, ...] = field(default=())

    @property
    def moving(self) -> tuple[PlannedUser, ...]:
        """The users who move, by login."""
        return tuple(u for u in self.users if u.moves)


async def make_plan(
    directory: PlanDirectory, config: Config, change: ReplicaChange | StoreChange
) -> Plan:
    """The plan of ``change`` under ``config``, from the facts in ``directory``.

    Raises :class:`PlanError` when the change does not fit the directory;
    directory failures (DirectoryUnavailable) pass through.
    """
    if isinstance(change, StoreChange):
        return await _store_plan(directory, config, change)
    return await _replica_plan(directory, config, change)


# ---------------------------------------------------------------------------
# Replicas of a tree.


async def _replica_plan(directory: PlanDirectory, config: Config, change: ReplicaChange) -> Plan:
    notes: list[str] = []
    tree = change.tree.strip()
    default = tree.lower() == DEFAULT_TREE
    trees = await directory.config_entries("tree")
    # The front end's own lookups for a vdir whose tree is ``tree``.
    if default:
        if not any(t.default_tree for t in trees):
            raise PlanError("the directory has no default public folder tree")
        replicas = await directory.default_tree_replicas()
        entry = None
    else:
        entry = _one(_named(trees, tree), "tree", tree, trees)
        replicas = await directory.tree_replicas(tree)
    if not _served(config, entry):
        notes.append(f"no public vdir of {config.source} serves tree {tree}")
    servers = await directory.config_entries("server")
    removed = tuple(_replica_named(name, replicas, servers, tree) for name in change.remove)
    added = tuple(_new_replica(name, replicas, servers, tree, notes) for name in change.add)
    # (A server cannot be both: one is a replica, the other must not be.)
    added, removed = _distinct(added), _distinct(removed)
    gone = {r.lower() for r in removed}
    after = tuple(sorted([*(s for s in replicas if s.lower() not in gone), *added], key=str.lower))
    if not after:
        raise PlanError(f"the change leaves tree {tree} without a replica")
    users, balanced = _routed(await directory.all_users(), config, notes)
    homes: dict[str, str | None] = {}
    if default and balanced:
        for mdb in sorted({u.home_mdb for u in users if u.home_mdb}):
            homes[mdb] = await directory.public_server_for_mailbox_store(mdb)
        _check_homes(homes, gone)
    planned = _place(
        config, users, replicas, after, balanced=balanced, homes_before=homes, homes_after=homes
    )
    return Plan(
        change="replicas",
        tree=DEFAULT_TREE if entry is None else (entry.name or tree),
        policy=policy_named(config.frontend.hash_policy).name,
        balanced=balanced,
        before=tuple(replicas),
        after=after,
        added=added,
        removed=removed,
        users=planned,
        summary=MoveSummary.of((u.placement for u in planned), (*replicas, *added)),
        notes=tuple(notes),
    )


def _check_homes(homes: dict[str, str | None], gone: set[str]) -> None:
    """Refuse to remove the server of a mailbox store's public store from the
    default tree: that store would go, and with it the store's users' home
    (Exchange refuses to delete it too)."""
    stores = sorted(mdb for mdb, host in homes.items() if host and host.lower() in gone)
    if stores:
        hosts = sorted({h for mdb in stores if (h := homes[mdb])})
        raise PlanError(
            f"{', '.join(hosts)} holds the public store of mailbox store {_rdn(stores[0])}"
            f"{f' and {len(stores) - 1} more' if len(stores) > 1 else ''}: give it another "
            "public store first (feproxy plan --store STORE --public-store PUBLIC_STORE)"
        )


def _rdn(dn: str) -> str:
    """The value of a DN's first component (``cn=MB1,...`` -> ``MB1``), or the DN."""
    first = dn.split(",", 1)[0]
    return first.split("=", 1)[1].strip() if "=" in first else dn


def _served(config: Config, tree: ConfigEntry | None) -> bool:
    """Whether a public vdir of ``config`` serves ``tree`` (None: the default tree)."""
    for vdir in config.vdirs:
        name = (vdir.tree or "").strip()
        if vdir.kind != "public" or not name:
            continue
        if name.lower() == DEFAULT_TREE:
            if tree is None:
                return True
        elif tree is not None and _named([tree], name):
            return True
    return False


def _distinct(names: Iterable[str]) -> tuple[str, ...]:
    seen: dict[str, str] = {}
    for name in names:
        seen.setdefault(name.lower(), name)
    return tuple(seen.values())


def _server_host(name: str, servers: Sequence[ConfigEntry]) -> str | None:
    """The host name of the server called ``name`` (host name, cn or DN), or None."""
    found = {s.host for s in _named(servers, name) if s.host}
    found |= {s.host for s in servers if s.host and s.host == name.strip().lower()}
    if len(found) > 1:
        raise PlanError(f"{len(found)} servers are called {name}: give the host name")
    return found.pop() if found else None


def _replica_named(
    name: str, replicas: Sequence[str], servers: Sequence[ConfigEntry], tree: str
) -> str:
    """The replica ``--remove NAME`` names (its host name, or its server's cn or DN)."""
    by_host = {r.lower(): r for r in replicas}
    host = by_host.get(name.strip().lower()) or _server_host(name, servers)
    if host is None or host.lower() not in by_host:
        listed = ", ".join(replicas) or "none"
        raise PlanError(f"{name} is not a replica of tree {tree} (replicas: {listed})")
    return by_host[host.lower()]


def _new_replica(
    name: str,
    replicas: Sequence[str],
    servers: Sequence[ConfigEntry],
    tree: str,
    notes: list[str],
) -> str:
    """The host name ``--add NAME`` gives a replica to."""
    host = _server_host(name, servers)
    if host is None:
        host = name.strip().lower()
        if not _HOST_NAME.fullmatch(host):
            raise PlanError(f"{name!r} is neither a server of the directory nor a host name")
        notes.append(f"{host} is not a server of the directory: planned by that host name")
    if host.lower() in {r.lower() for r in replicas}:
        raise PlanError(f"{name} is already a replica of tree {tree}")
    return host


# ---------------------------------------------------------------------------
# A mailbox store's public store.


async def _store_plan(directory: PlanDirectory, config: Config, change: StoreChange) -> Plan:
    notes: list[str] = []
    stores = await directory.config_entries("mailbox_store")
    store = _one(_named(stores, change.store), "mailbox_store", change.store, stores)
    publics = await directory.config_entries("public_store")
    public = _one(
        _named(publics, change.public_store), "public_store", change.public_store, publics
    )
    trees = await directory.config_entries("tree")
    defaults = {normalize_dn(t.dn) for t in trees if t.default_tree}
    if public.tree is None or normalize_dn(public.tree) not in defaults:
        served = [t.name or t.dn for t in _named(trees, public.tree or "")]
        tree = served[0] if served else public.tree or "-"
        raise PlanError(
            f"{public.name or public.dn} is a public store of tree {tree}, not of the default tree"
        )
    current = store.public_store
    if current is not None and normalize_dn(current) == normalize_dn(public.dn):
        raise PlanError(f"{public.name or public.dn} is already the public store of {store.name}")
    # The front end's own lookups: the server of a mailbox store's public
    # store (now), and the server of a store (the new one).
    server_before = await directory.public_server_for_mailbox_store(store.dn)
    server_after = await directory.server_of_store(public.dn)
    if server_after is None:
        notes.append(f"{public.name or public.dn} has no server: its users are hashed instead")
    replicas = await directory.default_tree_replicas()
    everyone, balanced = _routed(await directory.all_users(), config, notes)
    key = normalize_dn(store.dn)
    users = [u for u in everyone if u.home_mdb and normalize_dn(u.home_mdb) == key]
    if not balanced:
        notes.append("without authentication the front end ignores public stores: nobody moves")
    before = {u.home_mdb: server_before for u in users if u.home_mdb and balanced}
    after = {u.home_mdb: server_after for u in users if u.home_mdb and balanced}
    planned = _place(
        config, users, replicas, replicas, balanced=balanced, homes_before=before, homes_after=after
    )
    return Plan(
        change="public_store",
        tree=DEFAULT_TREE,
        policy=policy_named(config.frontend.hash_policy).name,
        balanced=balanced,
        before=tuple(replicas),
        after=tuple(replicas),
        added=(),
        removed=(),
        users=planned,
        summary=MoveSummary.of(
            (u.placement for u in planned),
            (*replicas, *(s for s in (server_before, server_after) if s)),
        ),
        store=StorePlan(
            dn=store.dn,
            name=store.name,
            public_store_before=current,
            public_store_after=public.dn,
            server_before=server_before,
            server_after=server_after,
        ),
        notes=tuple(notes),
    )


# ---------------------------------------------------------------------------
# Shared steps.


def _named(entries: Sequence[ConfigEntry], name: str) -> list[ConfigEntry]:
    """The entries called ``name``: by DN when it holds "=", else by cn (any case)."""
    wanted = name.strip()
    if "=" in wanted:
        key = normalize_dn(wanted)
        return [e for e in entries if normalize_dn(e.dn) == key]
    return [e for e in entries if e.name.casefold() == wanted.casefold()]


def _one(
    found: Sequence[ConfigEntry], kind: EntryKind, name: str, known: Sequence[ConfigEntry]
) -> ConfigEntry:
    what = _KIND_NAMES[kind]
    if not found:
        names = ", ".join(e.name or e.dn for e in known) or "none"
        raise PlanError(f"no {what} {name} in the directory (known: {names})")
    if len(found) > 1:
        raise PlanError(f"{len(found)} entries are {what}s called {name}: give the DN")
    return found[0]


def _routed(
    everyone: Iterable[UserEntry], config: Config, notes: list[str]
) -> tuple[list[UserEntry], bool]:
    """The users the front end routes, by login; and whether it balances them."""
    users = sorted(everyone, key=lambda u: (u.login.lower(), normalize_dn(u.dn)))
    if not config.frontend.authenticate:
        notes.append(
            "the front end does not authenticate: every request goes to the first "
            "replica in name order"
        )
        return users, False
    return [u for u in users if u.http_enabled], True


def _place(
    config: Config,
    users: Sequence[UserEntry],
    before: Sequence[str],
    after: Sequence[str],
    *,
    balanced: bool,
    homes_before: dict[str, str | None],
    homes_after: dict[str, str | None],
) -> tuple[PlannedUser, ...]:
    """Each user placed by :func:`placements`, in groups of one home server."""
    policy = policy_named(config.frontend.hash_policy)
    groups: dict[tuple[str | None, str | None], list[int]] = {}
    for i, user in enumerate(users):
        mdb = user.home_mdb or ""
        key = (homes_before.get(mdb), homes_after.get(mdb))
        groups.setdefault(key, []).append(i)
    placed: list[Placement | None] = [None] * len(users)
    tokens = [user_token(u) if balanced else None for u in users]
    for (home_before, home_after), members in groups.items():
        group = placements(
            policy,
            (tokens[i] for i in members),
            before,
            after,
            home_before=home_before,
            home_after=home_after,
        )
        for i, placement in zip(members, group, strict=True):
            placed[i] = placement
    return tuple(
        PlannedUser(u.login, u.dn, u.primary_smtp, tokens[i], p)
        for i, (u, p) in enumerate(zip(users, placed, strict=True))
        if p is not None
    )
