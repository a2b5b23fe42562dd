"""The status document of the admin listener (JSON, and the HTML page's data)."""

from __future__ import annotations

from typing import Protocol

from twisted.internet.interfaces import IReactorTime

from frontend import __version__
from frontend.config import Config
from frontend.proxy import FrontEnd, Runtime
from frontend.routing.marks import UnavailableMarks

__all__ = ["StatusSource", "build_status"]


class StatusSource(Protocol):
    """What the status reads of a running front end (a FrontEndService)."""

    @property
    def config(self) -> Config: ...
    @property
    def clock(self) -> IReactorTime: ...
    @property
    def marks(self) -> UnavailableMarks: ...
    @property
    def frontend(self) -> FrontEnd: ...
    @property
    def runtime(self) -> Runtime: ...
    @property
    def config_path(self) -> str: ...
    @property
    def loaded_at(self) -> float: ...
    @property
    def started_at(self) -> float: ...


def build_status(service: StatusSource) -> dict[str, object]:
    """What an operator wants to see: every known back end and its mark, caches,
    the configuration file and when it was loaded, the version.

    Known back ends are those of the configuration (hosts table, static
    virtual directories), every one the front end has tried since it
    started, and every marked one.
    """
    config = service.config
    now = service.clock.seconds()
    marks = service.marks.snapshot()
    seen = service.frontend.seen
    names: dict[str, str] = {}
    for name in [*config.hosts, *(s for v in config.vdirs for s in v.servers), *seen, *marks]:
        names.setdefault(name.lower(), name)
    backends: list[dict[str, object]] = []
    for key, name in sorted(names.items()):
        last = seen.get(name) or seen.get(key)
        backends.append(
            {
                "name": name,
                "address": config.hosts.get(key),
                "unavailable_until": marks.get(key),
                "last_status": last[0] if last else None,
                "last_seen": last[1] if last else None,
            }
        )
    lookups = service.runtime.lookups
    caches = [
        {"name": c.name, "entries": len(c), "hits": c.hits, "misses": c.misses}
        for c in (lookups.caches if lookups is not None else ())
    ]
    return {
        "version": __version__,
        "name": config.frontend.name,
        "config": {"path": service.config_path, "loaded_at": service.loaded_at},
        "started_at": service.started_at,
        "now": now,
        "in_flight": service.frontend.in_flight,
        "backends": backends,
        "caches": caches,
        "marks": marks,
    }
