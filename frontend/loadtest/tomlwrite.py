"""Just enough TOML writing for generated configuration files (tomllib only reads).

:func:`to_toml` writes what feproxy's configuration and the stub farm's
topology use: top-level keys, tables (nested ones too) and arrays of tables,
whose values are strings, numbers, booleans and arrays of them.  The load
test, the benchmark and the test suite write their files with it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import TypeGuard

__all__ = ["to_toml"]

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def _key(key: str) -> str:
    return key if _BARE_KEY.fullmatch(key) else json.dumps(key)


def _value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a valid TOML basic string
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {type(value).__name__} as TOML")


def _is_table_array(value: object) -> TypeGuard[Sequence[Mapping[str, object]]]:
    return (
        isinstance(value, list | tuple)
        and bool(value)
        and all(isinstance(v, Mapping) for v in value)
    )


def _table(name: str, body: Mapping[str, object], lines: list[str]) -> None:
    """``body``'s keys, then its tables and arrays of tables (``name``: its dotted name)."""
    nested = {k: v for k, v in body.items() if isinstance(v, Mapping) or _is_table_array(v)}
    lines += [f"{_key(k)} = {_value(v)}" for k, v in body.items() if k not in nested]
    if lines:
        lines.append("")
    for key, value in nested.items():
        path = f"{name}.{_key(key)}" if name else _key(key)
        if isinstance(value, Mapping):
            lines.append(f"[{path}]")
            _table(path, value, lines)
        elif _is_table_array(value):
            for item in value:
                lines.append(f"[[{path}]]")
                _table(path, item, lines)


def to_toml(data: Mapping[str, object]) -> str:
    """TOML for ``data``: ``tomllib.loads(to_toml(data)) == data`` for the
    shapes above (a non-empty list of mappings is an array of tables)."""
    lines: list[str] = []
    _table("", data, lines)
    return "\n".join(lines)
