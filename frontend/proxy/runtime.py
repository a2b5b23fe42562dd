"""One configuration and everything built from it, swapped whole on reload."""

from __future__ import annotations

from dataclasses import dataclass

from twisted.internet.interfaces import IReactorTime

from frontend.config import Config
from frontend.directory.credentials import Authenticator
from frontend.directory.lookups import Lookups
from frontend.proxy.interfaces import UserDirectory
from frontend.routing.marks import UnavailableMarks
from frontend.routing.resolver import Router
from frontend.wire.interfaces import BackendClient

__all__ = ["Runtime"]


@dataclass
class Runtime:
    """One configuration and what is built from it.

    ``directory`` is shared between runtimes while its settings stay the same
    (see :class:`frontend.ops.service.FrontEndService`); caches belong to one
    runtime, so a reload starts with empty caches.
    """

    config: Config
    router: Router
    agent: BackendClient
    lookups: Lookups | None = None
    auth: Authenticator | None = None

    @classmethod
    def build(
        cls,
        config: Config,
        clock: IReactorTime,
        marks: UnavailableMarks,
        *,
        agent: BackendClient,
        directory: UserDirectory | None = None,
    ) -> Runtime:
        """Build from ``config``, sending to back ends through ``agent``."""
        fe = config.frontend
        lookups = auth = None
        if directory is not None:
            lookups = Lookups(directory, clock, ttl=fe.cache_ttl, maxsize=fe.cache_size)
            if fe.authenticate:
                auth = Authenticator(
                    directory, lookups, clock, ttl=fe.cache_ttl, maxsize=fe.cache_size
                )
        router = Router(config, marks, lookups=lookups, auth=auth)
        return cls(config=config, router=router, agent=agent, lookups=lookups, auth=auth)
