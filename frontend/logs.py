"""Log observers: the operator's log and the access log, as two streams."""

from __future__ import annotations

import sys
from typing import IO, Any

from twisted.logger import (
    FilteringLogObserver,
    ILogFilterPredicate,
    ILogObserver,
    LogLevel,
    LogLevelFilterPredicate,
    PredicateResult,
    eventAsJSON,
    formatEventAsClassicLogText,
    globalLogBeginner,
)
from zope.interface import implementer

from frontend.accesslog import format_access, is_access_event

__all__ = ["start_logging", "LEVELS"]

LEVELS = {
    "debug": LogLevel.debug,
    "info": LogLevel.info,
    "warn": LogLevel.warn,
    "error": LogLevel.error,
}


@implementer(ILogObserver)
class _Writer:
    def __init__(self, stream: IO[str], render: Any) -> None:
        self._stream = stream
        self._render = render

    def __call__(self, event: dict[str, Any]) -> None:
        text = self._render(event)
        if text:
            self._stream.write(text if text.endswith("\n") else text + "\n")
            self._stream.flush()


@implementer(ILogFilterPredicate)
class _AccessPredicate:
    """``if_access`` for access-log events, ``otherwise`` for the rest."""

    def __init__(self, if_access: PredicateResult, otherwise: PredicateResult) -> None:
        self._answers = (otherwise, if_access)

    def __call__(self, event: dict[str, Any]) -> PredicateResult:
        return self._answers[is_access_event(event)]


def start_logging(
    *,
    access: IO[str] = sys.stdout,
    errors: IO[str] = sys.stderr,
    level: str = "info",
    json: bool = False,
) -> None:
    """Send access events to ``access`` and everything else to ``errors``."""
    if json:

        def render_access(e: dict[str, Any]) -> str:
            return eventAsJSON(e)

        render_other = render_access
    else:

        def render_access(e: dict[str, Any]) -> str:
            return format_access(e)

        def render_other(e: dict[str, Any]) -> str:
            return formatEventAsClassicLogText(e) or ""

    only_access = _AccessPredicate(PredicateResult.yes, PredicateResult.no)
    not_access = _AccessPredicate(PredicateResult.no, PredicateResult.maybe)

    levels = LogLevelFilterPredicate(defaultLogLevel=LEVELS[level])
    globalLogBeginner.beginLoggingTo(
        [
            FilteringLogObserver(_Writer(access, render_access), [only_access]),
            FilteringLogObserver(_Writer(errors, render_other), [not_access, levels]),
        ],
        redirectStandardIO=False,
    )
