"""Deadline: one lazily moved timer, exact to the injected clock."""

from __future__ import annotations

from twisted.internet.task import Clock

from frontend.wire.timers import Deadline


def test_action_runs_when_due_and_not_before() -> None:
    clock, fired = Clock(), []
    d = Deadline(clock)
    d.set(5, lambda: fired.append(clock.seconds()))
    clock.advance(4.9)
    assert fired == []
    clock.advance(0.1)
    assert fired == [5.0]
    assert not d.pending


def test_moving_later_keeps_one_timer_and_fires_at_the_new_time() -> None:
    clock, fired = Clock(), []
    d = Deadline(clock)
    d.set(5, lambda: fired.append("a"))
    clock.advance(3)
    d.set(5, lambda: fired.append("b"))  # now due at 8
    assert len(clock.getDelayedCalls()) == 1
    clock.advance(2)  # the timer fires at 5 and re-arms for 3 more
    assert fired == []
    assert len(clock.getDelayedCalls()) == 1
    clock.advance(3)
    assert fired == ["b"]


def test_moving_earlier_moves_the_timer() -> None:
    clock, fired = Clock(), []
    d = Deadline(clock)
    d.set(60, lambda: fired.append("idle"))
    d.set(1, lambda: fired.append("soon"))
    clock.advance(1)
    assert fired == ["soon"]


def test_cleared_deadline_never_fires_and_stop_cancels_the_timer() -> None:
    clock, fired = Clock(), []
    d = Deadline(clock)
    d.set(1, lambda: fired.append("x"))
    d.clear()
    clock.advance(2)
    assert fired == []
    assert clock.getDelayedCalls() == []
    d.set(1, lambda: fired.append("y"))
    d.stop()
    assert clock.getDelayedCalls() == []
    clock.advance(2)
    assert fired == []
