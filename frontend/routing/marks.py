"""Unavailable marks: back ends that could not be reached, and until when."""

from __future__ import annotations

from twisted.internet.interfaces import IReactorTime

__all__ = ["UnavailableMarks"]


class UnavailableMarks:
    """Server name -> time its mark expires, on an injected clock.

    Names compare case-insensitively.  Marks outlive configuration reloads:
    a server that was unreachable a second ago still is.
    """

    def __init__(self, clock: IReactorTime, duration: float) -> None:
        self._clock = clock
        self.duration = duration
        self._until: dict[str, float] = {}

    def mark(self, server: str) -> None:
        self._until[server.lower()] = self._clock.seconds() + self.duration

    def expires(self, server: str) -> float | None:
        """When the mark on ``server`` expires, or None when it is not marked."""
        key = server.lower()
        until = self._until.get(key)
        if until is None:
            return None
        if until <= self._clock.seconds():
            del self._until[key]
            return None
        return until

    def __contains__(self, server: object) -> bool:
        if not self._until:  # the common case: nothing marked
            return False
        return isinstance(server, str) and self.expires(server) is not None

    def snapshot(self) -> dict[str, float]:
        """Every current mark (expired ones are dropped)."""
        return {s: t for s in list(self._until) if (t := self.expires(s)) is not None}
