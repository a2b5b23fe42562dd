"""Just enough TOML writing for feproxy's configuration (tomllib only reads)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

__all__ = ["to_toml"]


def _value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)  # a JSON string is a valid TOML basic string
    if isinstance(v, list | tuple):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    raise TypeError(f"cannot write {type(v).__name__} as TOML")


def _table(name: str, body: Mapping[str, Any], lines: list[str]) -> None:
    lines.append(f"[{name}]")
    subs = {k: v for k, v in body.items() if isinstance(v, Mapping)}
    lines += [f"{json.dumps(k)} = {_value(v)}" for k, v in body.items() if k not in subs]
    lines.append("")
    for key, sub in subs.items():
        _table(f"{name}.{json.dumps(key)}", sub, lines)


def to_toml(data: Mapping[str, Any]) -> str:
    """TOML for top-level tables (nested tables allowed) and arrays of tables."""
    lines: list[str] = []
    for section, body in data.items():
        if isinstance(body, list):
            for item in body:
                lines.append(f"[[{section}]]")
                lines += [f"{json.dumps(k)} = {_value(v)}" for k, v in item.items()]
                lines.append("")
        else:
            _table(json.dumps(section), body, lines)
    return "\n".join(lines)
