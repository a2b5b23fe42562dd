"""One configuration and everything built from it, swapped whole on reload."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from frontend.config import Config
from frontend.directory.credentials import Authenticator
from frontend.directory.lookups import Lookups
from frontend.routing.marks import UnavailableMarks
from frontend.routing.resolver import Router
from frontend.wire.pool import Upstream

__all__ = ["Runtime"]


@dataclass
class Runtime:
    """One configuration and what is built from it.

    ``directory`` is shared between runtimes while its settings stay the same
    (see :class:`frontend.service.FrontEndService`); caches belong to one
    runtime, so a reload starts with empty caches.
    """

    config: Config
    router: Router
    agent: Any
    lookups: Lookups | None = None
    auth: Authenticator | None = None

    @classmethod
    def build(
        cls,
        config: Config,
        reactor: Any,
        marks: UnavailableMarks,
        *,
        directory: Any = None,
        agent: Any = None,
    ) -> Runtime:
        """Build from ``config``; ``agent`` replaces the back-end client in tests."""
        fe = config.frontend
        if agent is None:
            agent = Upstream(
                reactor,
                port=fe.backend_port,
                connect_timeout=fe.connect_timeout,
                response_timeout=fe.response_timeout,
                hosts=config.hosts,
                max_idle_per_backend=fe.max_idle_per_backend,
                idle_timeout=fe.idle_timeout,
            )
        lookups = auth = None
        if directory is not None:
            lookups = Lookups(directory, reactor, ttl=fe.cache_ttl, maxsize=fe.cache_size)
            if fe.authenticate:
                auth = Authenticator(
                    directory, lookups, reactor, ttl=fe.cache_ttl, maxsize=fe.cache_size
                )
        router = Router(config, marks, lookups=lookups, auth=auth)
        return cls(config=config, router=router, agent=agent, lookups=lookups, auth=auth)
