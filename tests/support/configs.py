"""Front-end configuration files for tests that run real processes."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from frontend.loadtest.tomlwrite import to_toml

__all__ = ["to_toml", "write_config", "farm_hosts"]


def farm_hosts(farm: Any) -> dict[str, str]:
    """The farm's host name -> loopback address table."""
    return {s["name"]: s["address"] for s in farm.servers()}


def write_config(path: Path, data: Mapping[str, Any]) -> Path:
    path.write_text(to_toml(data), encoding="utf-8")
    return path
