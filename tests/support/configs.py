"""Front-end configuration files for tests that run real processes."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from frontend.loadtest.tomlwrite import to_toml

if TYPE_CHECKING:
    from tests.support.farm import Farm

__all__ = ["farm_hosts", "to_toml", "write_config"]


def farm_hosts(farm: Farm) -> dict[str, str]:
    """The farm's host name -> loopback address table."""
    return {s["name"]: s["address"] for s in farm.servers()}


def write_config(path: Path, data: Mapping[str, Any]) -> Path:
    path.write_text(to_toml(data), encoding="utf-8")
    return path
