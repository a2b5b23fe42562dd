"""The router: finds the facts a routing decision needs, then decides.

The decisions themselves are the pure functions of :mod:`frontend.routing.decisions`;
this class only gathers what they need (authentication, directory lookups
through caches) for each kind of virtual directory.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Container, Sequence
from typing import NamedTuple

from frontend.config import Config, VirtualDirectory
from frontend.directory.credentials import Authenticator
from frontend.directory.interfaces import UserEntry
from frontend.directory.lookups import Lookups
from frontend.errors import DirectoryUnavailable, Forbidden, NotFound
from frontend.routing.decisions import (
    Route,
    Target,
    check_mailbox_owner,
    folder_keys,
    implicit_target,
    mailbox_logon,
    mailbox_route,
    match_vdir,
    public_order,
    public_route,
    referral_candidates,
    static_route,
    user_token,
)
from frontend.routing.hashing import HashPolicy, policy_named

__all__ = ["ClientRequest", "Router"]


class ClientRequest(NamedTuple):
    """What routing may look at in a client's request."""

    method: bytes
    target: Target
    authorization: bytes | None
    client_address: str
    secure: bool


class _RememberedOrders:
    """A hash policy's orders, remembered (least recently used go first).

    A user's order over the same replicas never changes, and hashing it
    again on every request is a good part of routing one.
    """

    def __init__(self, policy: HashPolicy, size: int) -> None:
        self.name = policy.name
        self._order = functools.lru_cache(maxsize=size)(policy.order)

    def order(self, token: bytes, servers: Sequence[str]) -> tuple[str, ...]:
        return self._order(token, tuple(servers))


class Router:
    """Routes requests under one configuration.

    ``auth`` is None when the front end does not authenticate; ``lookups`` is
    None without a directory (then only static virtual directories route:
    the configuration requires a directory for the others).
    """

    def __init__(
        self,
        config: Config,
        unavailable: Container[str],
        *,
        lookups: Lookups | None = None,
        auth: Authenticator | None = None,
    ) -> None:
        self._config = config
        self._unavailable = unavailable
        self._lookups = lookups
        self._auth = auth
        self._policy = policy_named(config.frontend.hash_policy)
        self._orders = _RememberedOrders(self._policy, config.frontend.cache_size)

    async def route(
        self, request: ClientRequest, note: Callable[[str, str], None] = lambda _k, _v: None
    ) -> Route:
        """The route for ``request``.

        ``note`` is told what is learnt on the way, for the access log and
        metrics even when routing then fails: ``("vdir", path)`` and
        ``("user", login)``.
        """
        found = match_vdir(self._config.vdirs, request.target)
        if found is None:
            raise NotFound()
        vdir, rest = found
        note("vdir", vdir.path)
        if vdir.kind == "static":
            return static_route(vdir, request.target, self._unavailable)
        user: UserEntry | None = None
        if self._auth is not None:
            user = await self._auth.authenticate(request.authorization)
            note("user", user.login)
            if not user.http_enabled:
                raise Forbidden("HTTP access is disabled for this user.")
        if vdir.kind == "mailbox":
            return await self._mailbox(vdir, rest, request, user)
        return await self._public(vdir, request.target, user)

    async def _mailbox(
        self,
        vdir: VirtualDirectory,
        rest: tuple[str, ...],
        request: ClientRequest,
        user: UserEntry | None,
    ) -> Route:
        lookups = self._need_lookups()
        logon = mailbox_logon(vdir, rest)
        owner: UserEntry | None
        if logon.address is None:
            if user is None:
                raise NotFound("Name a mailbox in the path, as in /exchange/<name>/.")
            owner, key = user, ("user", user.login.lower())
            alias = user.alias or user.login
            target = implicit_target(request.target, len(vdir.segments), alias)
        else:
            key = ("mailbox", logon.address.lower())
            owner = await lookups.mailbox.get(key[1])
            target = request.target.raw
        store = check_mailbox_owner(owner)
        server = await lookups.store_server.get(store)
        return mailbox_route(vdir, target, server, key)

    async def _public(
        self, vdir: VirtualDirectory, target: Target, user: UserEntry | None
    ) -> Route:
        lookups = self._need_lookups()
        token: bytes | None = None
        if user is not None:
            token = user_token(user)
        referred = self._referred(lookups, vdir, target)
        if referred is not None:
            servers = public_order(self._orders, token, referred)
            return public_route(vdir, target, servers, token)
        tree = None if (vdir.tree or "").lower() == "default" else vdir.tree
        replicas = await lookups.tree.get(tree)
        home = None
        if tree is None and user is not None and user.home_mdb:
            home = await lookups.public_server.get(user.home_mdb)
        servers = public_order(self._orders, token, replicas, home=home)
        return public_route(vdir, target, servers, token)

    def _need_lookups(self) -> Lookups:
        if self._lookups is None:  # a configuration check should have refused this
            raise DirectoryUnavailable(detail="no directory configured for this virtual directory")
        return self._lookups

    @staticmethod
    def _referred(
        lookups: Lookups, vdir: VirtualDirectory, target: Target
    ) -> tuple[str, ...] | None:
        if not len(lookups.referral):
            return None  # the common case: no referral remembered at all
        for key in folder_keys(vdir, target):
            listed = lookups.referral.peek((vdir.path.lower(), key))
            if listed:
                return tuple(listed)
        return None

    def referred(
        self, route: Route, target: Target, listed: tuple[str, ...], tried: set[str]
    ) -> tuple[str, ...]:
        """A back end referred ``route``'s request to ``listed``: remember the
        list for this folder and say where to go next."""
        key = folder_keys(route.vdir, target)[0]
        self._need_lookups().referral.put((route.vdir.path.lower(), key), listed)
        return referral_candidates(self._policy, route, listed, tried)

    async def reroute_refused(self, route: Route) -> Route | None:
        """After the only server of ``route`` refused: look its owner up again.

        Bypasses the caches (the mailbox may have moved).  Returns a route to
        the new server, or None when the directory still names the same one.
        """
        if route.owner_key is None or self._lookups is None:
            return None
        kind, name = route.owner_key
        cache = self._lookups.user if kind == "user" else self._lookups.mailbox
        owner = await cache.get(name, fresh=True)
        store = check_mailbox_owner(owner)
        server = await self._lookups.store_server.get(store, fresh=True)
        if server is None or server.lower() in (s.lower() for s in route.servers):
            return None
        return route._replace(servers=(server,))
