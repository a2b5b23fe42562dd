"""Run one coroutine on the global reactor, bounded in time, interruptible.

Only the command line uses this (it is the one place that imports the global
reactor).  A time limit or a Ctrl-C (SIGINT, SIGTERM) cancels the coroutine;
the reactor stops only once the coroutine has unwound, so that its
``finally`` clauses (closing connections, lifting a fault it set on a shared
farm) run to the end.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Final, TypeVar

from twisted.internet.defer import CancelledError, Deferred, ensureDeferred
from twisted.python.failure import Failure

if TYPE_CHECKING:
    from frontend.ops.reactor import IServeReactor

__all__ = ["Interrupted", "TimeLimitExceeded", "run_in_reactor"]

T = TypeVar("T")

#: How long the reactor waits at shutdown for the coroutine to unwind.
_UNWIND_SECONDS: Final = 15.0


class Interrupted(RuntimeError):
    """The run was stopped by a signal (Ctrl-C)."""


class TimeLimitExceeded(RuntimeError):
    """The run took longer than its time limit."""


def run_in_reactor(
    main: Callable[[IServeReactor], Coroutine[object, object, T]],
    time_limit: float,
    reactor: IServeReactor | None = None,
) -> T:
    """Run ``main(reactor)`` to completion on the (global) reactor and return its result.

    Raises what ``main`` raises, :class:`TimeLimitExceeded` after
    ``time_limit`` seconds, :class:`Interrupted` if a signal stopped the
    reactor first.  The reactor can run only once per process.
    """
    if reactor is None:
        from frontend.ops.reactor import global_reactor  # noqa: PLC0415 - installs the reactor

        reactor = global_reactor()
    outcome: list[T | Failure] = []
    timed_out: list[bool] = []
    stopping: list[bool] = []
    unwound: Deferred[None] = Deferred()

    async def wrapped() -> T:
        try:
            return await main(reactor)
        finally:
            unwound.callback(None)

    def start() -> None:
        running = ensureDeferred(wrapped())

        def expire() -> None:
            timed_out.append(True)
            running.cancel()

        timer = reactor.callLater(time_limit, expire)

        def finished(result: T | Failure) -> None:
            if timer.active():
                timer.cancel()
            outcome.append(result)
            if not stopping:
                stopping.append(True)
                reactor.stop()

        def before_shutdown() -> Deferred[None]:
            stopping.append(True)
            running.cancel()  # no effect once it has finished
            guard = reactor.callLater(_UNWIND_SECONDS, _fire, unwound)
            unwound.addBoth(lambda _: guard.cancel() if guard.active() else None)
            return unwound

        running.addBoth(finished)
        reactor.addSystemEventTrigger("before", "shutdown", before_shutdown)

    reactor.callWhenRunning(start)
    reactor.run()
    if not outcome:
        raise Interrupted("interrupted")
    result = outcome[0]
    if isinstance(result, Failure):
        if timed_out and result.check(CancelledError):
            raise TimeLimitExceeded(f"the run took longer than {time_limit:g} s")
        if result.check(CancelledError):
            raise Interrupted("interrupted")
        result.raiseException()
    return result


def _fire(d: Deferred[None]) -> None:
    if not d.called:
        d.callback(None)
