"""Front-end configuration files for tests that run real processes."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = ["to_toml", "write_config", "farm_hosts"]


def _value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)  # a JSON string is a valid TOML basic string
    if isinstance(v, Sequence):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    raise TypeError(type(v))


def to_toml(data: Mapping[str, Any]) -> str:
    """TOML for the shapes feproxy's configuration uses (tables, arrays of tables)."""
    lines: list[str] = []
    for section, body in data.items():
        if isinstance(body, list):
            for item in body:
                lines.append(f"[[{section}]]")
                lines += [f"{k} = {_value(v)}" for k, v in item.items()]
        else:
            lines.append(f"[{section}]")
            subs = {k: v for k, v in body.items() if isinstance(v, Mapping)}
            lines += [f"{json.dumps(k)} = {_value(v)}" for k, v in body.items() if k not in subs]
            for name, sub in subs.items():
                lines.append(f"[{section}.{name}]")
                lines += [f"{k} = {_value(v)}" for k, v in sub.items()]
        lines.append("")
    return "\n".join(lines)


def farm_hosts(farm: Any) -> dict[str, str]:
    """The farm's host name -> loopback address table."""
    return {s["name"]: s["address"] for s in farm.servers()}


def write_config(path: Path, data: Mapping[str, Any]) -> Path:
    path.write_text(to_toml(data), encoding="utf-8")
    return path
