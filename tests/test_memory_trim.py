"""The heap is trimmed after a crowd of connections leaves, and only then."""

from __future__ import annotations

from twisted.internet.task import Clock

from frontend.ops import memory
from frontend.ops.memory import MemoryTrimmer


class Counts:
    def __init__(self) -> None:
        self.now = 0
        self.peak = 0

    def open_connections(self) -> int:
        return self.now

    def take_peak(self) -> int:
        peak, self.peak = self.peak, self.now
        return peak

    def set(self, n: int) -> None:
        self.now = n
        self.peak = max(self.peak, n)


def test_heap_is_trimmed_when_connections_fall_by_the_drop_and_not_before() -> None:
    """A fall of 64 connections from the peak trims once; steady or small falls do not."""
    clock = Clock()
    counts = Counts()
    trimmer = MemoryTrimmer(counts, clock, interval=5.0, drop=64)
    trimmer.startService()
    counts.set(500)
    clock.advance(5)
    assert trimmer.trims == 0
    counts.set(470)
    clock.advance(5)
    assert trimmer.trims == 0
    counts.set(600)
    counts.set(10)  # a crowd came and went between two checks
    clock.advance(5)
    assert trimmer.trims == 1
    clock.advance(5)
    assert trimmer.trims == 1
    trimmer.stopService()


def test_malloc_trim_is_found_on_glibc() -> None:
    """On this (glibc) system the trim is really called and succeeds or finds nothing."""
    assert memory._TRIM is not None
    assert memory.malloc_trim() in (True, False)
