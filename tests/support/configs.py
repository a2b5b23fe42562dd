"""Front-end configuration files for tests that run real processes."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from frontend.loadtest.tomlwrite import to_toml

if TYPE_CHECKING:
    from frontend.loadtest.slapd import Slapd
    from tests.support.farm import Farm

__all__ = [
    "directory_table",
    "farm_frontend",
    "farm_hosts",
    "static_config",
    "to_toml",
    "write_config",
]

_DIRECTORY_KEYS = (
    "url",
    "bind_dn",
    "bind_password",
    "base_dn",
    "config_dn",
    "netbios_domain",
    "timeout",
    "pool_size",
)


def directory_table(slapd: Slapd, **extra: object) -> dict[str, object]:
    """The ``[directory]`` table of a front end on ``slapd``'s service account
    (``extra``: more keys, or keys replaced)."""
    settings = slapd.settings()
    return {**{k: getattr(settings, k) for k in _DIRECTORY_KEYS}, **extra}


def farm_hosts(farm: Farm) -> dict[str, str]:
    """The farm's host name -> loopback address table."""
    return {s["name"]: s["address"] for s in farm.servers()}


def farm_frontend(port: int, farm: Farm, **extra: object) -> dict[str, object]:
    """The ``[frontend]`` table of a front end on loopback ``port`` in front of
    ``farm`` (``extra``: more keys, or keys replaced)."""
    return {
        "listen": [f"tcp:{port}:interface=127.0.0.1"],
        "backend_port": farm.port,
        **extra,
    }


def write_config(path: Path, data: Mapping[str, Any]) -> Path:
    path.write_text(to_toml(data), encoding="utf-8")
    return path


def static_config(path: Path, port: int, farm: Farm, **frontend: object) -> Path:
    """A front end on loopback ``port`` without authentication, whose one vdir,
    ``/exchweb``, is static and goes to the farm's ex1 (``frontend``: more keys)."""
    data = {
        "frontend": farm_frontend(port, farm, authenticate=False, **frontend),
        "hosts": farm_hosts(farm),
        "vdirs": [{"path": "/exchweb", "kind": "static", "servers": ["ex1.example.com"]}],
    }
    return write_config(path, data)
