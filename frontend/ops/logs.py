"""Log observers: the operator's log and the access log, as two streams."""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO

from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import (
    FilteringLogObserver,
    ILogFilterPredicate,
    ILogObserver,
    LogEvent,
    LogLevel,
    LogLevelFilterPredicate,
    PredicateResult,
    eventAsJSON,
    formatEventAsClassicLogText,
    globalLogBeginner,
)
from zope.interface import implementer

from frontend.proxy.accesslog import format_access, is_access_event

__all__ = ["LEVELS", "Logging", "start_logging"]

LEVELS = {
    "debug": LogLevel.debug,
    "info": LogLevel.info,
    "warn": LogLevel.warn,
    "error": LogLevel.error,
}


@implementer(ILogObserver)
class _Writer:
    """Writes rendered events; with a ``clock``, flushes at most every
    ``FLUSH_DELAY`` seconds (the access log: one write a request is costly)."""

    FLUSH_DELAY = 0.2

    def __init__(
        self,
        stream: IO[str],
        render: Callable[[LogEvent], str],
        clock: IReactorTime | None = None,
    ) -> None:
        self._stream = stream
        self._render = render
        self._clock = clock
        self._pending: IDelayedCall | None = None

    def __call__(self, event: LogEvent) -> None:
        text = self._render(event)
        if text:
            self._stream.write(text if text.endswith("\n") else text + "\n")
            if self._clock is None:
                self._stream.flush()
            elif self._pending is None:
                self._pending = self._clock.callLater(self.FLUSH_DELAY, self.flush)

    def flush(self) -> None:
        if self._pending is not None and self._pending.active():
            self._pending.cancel()
        self._pending = None
        self._stream.flush()


@implementer(ILogFilterPredicate)
class _AccessPredicate:
    """``if_access`` for access-log events, ``otherwise`` for the rest."""

    def __init__(self, if_access: PredicateResult, otherwise: PredicateResult) -> None:
        self._answers = (otherwise, if_access)

    def __call__(self, event: LogEvent) -> PredicateResult:
        return self._answers[is_access_event(event)]


@dataclass(frozen=True)
class Logging:
    """What :func:`start_logging` set up.

    ``access`` is the access stream's own observer: the front end hands it
    access events directly, without the global publisher and its filters
    (which cost a good part of a small request).  ``flush`` writes out what
    the access stream holds; call it at shutdown.
    """

    access: Callable[[LogEvent], None]
    flush: Callable[[], None]


def start_logging(
    *,
    access: IO[str] = sys.stdout,
    errors: IO[str] = sys.stderr,
    level: str = "info",
    json: bool = False,
    clock: IReactorTime | None = None,
) -> Logging:
    """Send access events to ``access`` and everything else to ``errors``.

    With ``clock`` the access log is flushed in batches; call the returned
    ``flush`` at shutdown to write what is left.
    """
    if json:

        def render_access(e: LogEvent) -> str:
            return eventAsJSON(e)

        render_other = render_access
    else:

        def render_access(e: LogEvent) -> str:
            return format_access(e)

        def render_other(e: LogEvent) -> str:
            return formatEventAsClassicLogText(e) or ""

    only_access = _AccessPredicate(PredicateResult.yes, PredicateResult.no)
    not_access = _AccessPredicate(PredicateResult.no, PredicateResult.maybe)

    levels = LogLevelFilterPredicate(defaultLogLevel=LEVELS[level])
    access_writer = _Writer(access, render_access, clock)
    globalLogBeginner.beginLoggingTo(
        [
            FilteringLogObserver(access_writer, [only_access]),
            FilteringLogObserver(_Writer(errors, render_other), [not_access, levels]),
        ],
        redirectStandardIO=False,
    )
    return Logging(access=access_writer, flush=access_writer.flush)
