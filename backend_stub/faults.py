"""Fault modes of a stub server and their JSON form for the control API."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

__all__ = ["MODES", "NO_FAULT", "Fault", "FaultError", "parse_fault"]

Mode = Literal["none", "refuse", "delay", "cut", "hang", "drop", "garbage"]
MODES: tuple[Mode, ...] = ("none", "refuse", "delay", "cut", "hang", "drop", "garbage")

# The parameters each mode takes (all required).
_PARAMS: dict[str, frozenset[str]] = {
    "none": frozenset(),
    "refuse": frozenset(),
    "delay": frozenset({"seconds"}),
    "cut": frozenset({"after_bytes"}),
    "hang": frozenset(),
    "drop": frozenset(),
    "garbage": frozenset(),
}


class FaultError(ValueError):
    """A fault description from the control API is malformed."""


@dataclass(frozen=True)
class Fault:
    """The fault in force on one server.

    ``refuse``: not listening; ``delay``: wait *seconds* before the response
    headers; ``cut``: headers plus *after_bytes* body bytes, then close;
    ``hang``: headers only, never finish; ``drop``: read the request, then
    close the connection without a byte of answer; ``garbage``: answer with
    bytes that are not HTTP, then close; ``none``: normal service.
    """

    mode: Mode = "none"
    seconds: float = 0.0
    after_bytes: int = 0

    def to_json(self) -> dict[str, Any]:
        """The JSON object for this fault: the mode and its parameters."""
        result: dict[str, Any] = {"mode": self.mode}
        if self.mode == "delay":
            result["seconds"] = self.seconds
        elif self.mode == "cut":
            result["after_bytes"] = self.after_bytes
        return result


NO_FAULT = Fault()


def parse_fault(data: object) -> Fault:
    """Validate a decoded JSON body such as ``{"mode": "delay", "seconds": 2}``."""
    if not isinstance(data, dict):
        raise FaultError("expected a JSON object")
    mode = data.get("mode")
    if mode not in _PARAMS:
        raise FaultError(f"mode: expected one of {', '.join(MODES)}, got {mode!r}")
    allowed = _PARAMS[mode]
    for key in data:
        if key != "mode" and key not in allowed:
            raise FaultError(f"{key}: not a parameter of mode {mode!r}")
    for key in allowed:
        if key not in data:
            raise FaultError(f"{key}: required by mode {mode!r}")
    if mode == "delay":
        seconds = data["seconds"]
        if (
            isinstance(seconds, bool)
            or not isinstance(seconds, int | float)
            or not math.isfinite(seconds)
            or seconds < 0
        ):
            raise FaultError(f"seconds: expected a number >= 0, got {seconds!r}")
        return Fault("delay", seconds=float(seconds))
    if mode == "cut":
        after = data["after_bytes"]
        if isinstance(after, bool) or not isinstance(after, int) or after < 0:
            raise FaultError(f"after_bytes: expected an integer >= 0, got {after!r}")
        return Fault("cut", after_bytes=after)
    return Fault(mode)
