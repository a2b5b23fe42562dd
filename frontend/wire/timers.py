"""Deadlines that cost nothing to move.

A proxy moves its deadlines on every request: a back-end connection waits
for a response, then idles in the pool; a client connection idles, then
reads a head, then a body.  Creating and cancelling a reactor timer for each
step is a good part of a request's cost.  A :class:`Deadline` keeps one
timer and only notes the new due time; when the timer fires early it is
re-armed for what is left.  A deadline earlier than the timer's replaces the
timer (cancel and a new one): Twisted's ``DelayedCall.reset`` to an earlier
time searches the whole list of timers, which with thousands of connections
(a burst) took three quarters of the front end's time.
"""

from __future__ import annotations

from collections.abc import Callable

from twisted.internet.interfaces import IDelayedCall, IReactorTime

__all__ = ["Deadline"]


class Deadline:
    """At most one pending action, run ``seconds`` after :meth:`set` unless
    :meth:`clear` or :meth:`stop` comes first."""

    __slots__ = ("_action", "_at", "_call", "_clock", "_due")

    def __init__(self, clock: IReactorTime) -> None:
        self._clock = clock
        self._due: float | None = None
        self._action: Callable[[], object] | None = None
        self._call: IDelayedCall | None = None
        self._at = 0.0  # when the timer is due

    def set(self, seconds: float, action: Callable[[], object]) -> None:
        """Run ``action`` in ``seconds`` (replacing any pending one)."""
        due = self._clock.seconds() + seconds
        self._due, self._action = due, action
        call = self._call
        if call is None:
            self._call = self._clock.callLater(seconds, self._check)
            self._at = due
        elif self._at > due:
            call.cancel()
            self._call = self._clock.callLater(seconds, self._check)
            self._at = due

    def clear(self) -> None:
        """Forget the pending action (the timer is left to lapse)."""
        self._due = self._action = None

    def stop(self) -> None:
        """Forget the pending action and cancel the timer (the owner is done)."""
        self.clear()
        call, self._call = self._call, None
        if call is not None and call.active():
            call.cancel()

    @property
    def pending(self) -> bool:
        return self._due is not None

    def _check(self) -> None:
        self._call = None
        if self._due is None:
            return
        left = self._due - self._clock.seconds()
        if left > 0:
            self._call = self._clock.callLater(left, self._check)
            self._at = self._due
            return
        action = self._action
        self._due = self._action = None
        if action is not None:
            action()
