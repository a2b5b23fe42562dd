"""The status document of the admin listener (JSON, and the HTML page's data)."""

from __future__ import annotations

from typing import Any

from frontend import __version__

__all__ = ["build_status"]


def build_status(service: Any) -> dict[str, Any]:
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
    backends = []
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
