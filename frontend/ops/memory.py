"""Giving memory back to the system after a crowd of connections has gone.

The buffers of a busy connection (64 KiB reads and writes) come from glibc's
heap, and freeing them leaves the pages with the process: 500 slow readers
cut after ``send_timeout`` took the front end from 59 to 114 MiB, and it
stayed there.  glibc's ``malloc_trim`` hands free heap pages back.
:class:`MemoryTrimmer` calls it, at most every ``interval`` seconds, when the
number of open client connections has fallen by ``drop`` or more since its
highest point (so it costs nothing while the crowd is stable).  Elsewhere
than on glibc it does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from collections.abc import Callable
from typing import Protocol

from twisted.application.service import Service
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

__all__ = ["MemoryTrimmer", "malloc_trim"]

log = Logger()


def _find_trim() -> Callable[[int], int] | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        trim: Callable[[int], int] = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):  # not glibc
        return None
    return trim


_TRIM = _find_trim()


def malloc_trim() -> bool:
    """Hand free heap memory back to the system; whether glibc did it."""
    return _TRIM is not None and _TRIM(0) == 1


class ConnectionCounts(Protocol):
    """How many client connections are open, and the most there were since asked."""

    def open_connections(self) -> int: ...

    def take_peak(self) -> int:
        """The most connections open at once since the last call."""


class MemoryTrimmer(Service):
    """Trims the heap when the open connections have fallen by ``drop``
    from their peak since the last check."""

    def __init__(
        self,
        counts: ConnectionCounts,
        clock: IReactorTime,
        *,
        interval: float = 5.0,
        drop: int = 64,
    ) -> None:
        self._counts = counts
        self._drop = drop
        self.trims = 0
        self._loop = LoopingCall(self.check)
        self._loop.clock = clock
        self._interval = interval

    def check(self) -> None:
        peak = self._counts.take_peak()
        now = self._counts.open_connections()
        if peak - now >= self._drop:
            log.debug("{n} connections fewer: trimming the heap", n=peak - now)
            malloc_trim()
            self.trims += 1

    def startService(self) -> None:
        Service.startService(self)
        self._loop.start(self._interval, now=False)

    def stopService(self) -> None:
        Service.stopService(self)
        if self._loop.running:
            self._loop.stop()
