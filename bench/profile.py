"""Sampling profiles of the front end under load, with py-spy.

:func:`record_command` is the py-spy command line (raw "collapsed stacks"
output); :func:`hotspots` reads that output into the functions that were on
CPU most often, by self time (the leaf frame) and inclusive time (anywhere
on the stack), each named with ``file:line``.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Hotspot", "find_py_spy", "hotspots", "record_command"]

# "function (path/to/file.py:123)" in a collapsed stack.
_FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")


# The entry point's frames are on every stack.
_ENTRY = "frontend/cli.py"


@dataclass(frozen=True)
class Hotspot:
    """One function: share of samples with it as leaf (self) or anywhere (total)."""

    function: str
    location: str
    self_share: float
    total_share: float


def find_py_spy() -> str | None:
    """py-spy next to this interpreter (the project's .venv), or on PATH."""
    beside = Path(sys.executable).parent / "py-spy"
    if beside.exists() and os.access(beside, os.X_OK):
        return str(beside)
    return shutil.which("py-spy")


def record_command(py_spy: str, pid: int, seconds: int, output: Path) -> list[str]:
    """py-spy recording ``pid`` (and its subprocesses) for ``seconds`` as raw stacks."""
    return [
        py_spy,
        "record",
        "--pid",
        str(pid),
        "--duration",
        str(seconds),
        "--rate",
        "200",
        "--format",
        "raw",
        "--subprocesses",
        "--nonblocking",
        "--output",
        str(output),
    ]


def _short(location: str, root: Path) -> str:
    for prefix in (str(root) + os.sep, "/usr/lib/python3.11/"):
        if location.startswith(prefix):
            return location[len(prefix) :]
    marker = "site-packages" + os.sep
    if marker in location:
        return location.split(marker, 1)[1]
    return location


def _frame_key(frame: str, root: Path) -> tuple[str, str]:
    match = _FRAME.match(frame.strip())
    if match is None:
        return frame.strip(), "?"
    location = _short(match.group("file"), root)
    if match.group("line"):
        location += ":" + match.group("line")
    return match.group("func"), location


def _file(location: str) -> str:
    """``path`` of ``path:line``."""
    path, sep, line = location.rpartition(":")
    return path if sep and line.isdigit() else location


def hotspots(
    raw: str, root: Path, top: int = 15, inclusive_under: str = "frontend/"
) -> tuple[list[Hotspot], list[Hotspot], int]:
    """(by self time, by inclusive time, samples) from py-spy's raw output.

    Self time is counted per line (``file:line`` of the leaf frame).
    Inclusive time is counted per function, named by its file and the line
    most often on the stack, and kept only for functions whose file is
    under ``inclusive_under`` (the front end's own code: the reactor's
    frames are on every stack and say nothing).  Process and thread frames
    that py-spy adds at the root of each stack are ignored.
    """
    self_counts: Counter[tuple[str, str]] = Counter()
    line_counts: Counter[tuple[str, str]] = Counter()
    function_counts: Counter[tuple[str, str]] = Counter()
    samples = 0
    for line in raw.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [
            _frame_key(f, root)
            for f in stack.split(";")
            if not f.startswith(("process ", "thread "))
        ]
        if not frames:
            continue
        samples += count
        self_counts[frames[-1]] += count
        for key in set(frames):
            line_counts[key] += count
        for func, loc in {(func, _file(loc)) for func, loc in frames}:
            function_counts[(func, loc)] += count
    if samples == 0:
        return [], [], 0
    by_self = [
        Hotspot(func, loc, n / samples, line_counts[(func, loc)] / samples)
        for (func, loc), n in self_counts.most_common(top)
    ]
    by_total = []
    for (func, path), n in function_counts.most_common():
        if not path.startswith(inclusive_under) or path.startswith(_ENTRY):
            continue
        lines = [(c, loc) for (f, loc), c in line_counts.items() if (f, _file(loc)) == (func, path)]
        hottest = max(lines)[1] if lines else path
        own = sum(c for (f, loc), c in self_counts.items() if (f, _file(loc)) == (func, path))
        by_total.append(Hotspot(func, hottest, own / samples, n / samples))
        if len(by_total) == top:
            break
    return by_self, by_total, samples
