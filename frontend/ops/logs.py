"""Log observers: the operator's log and the access log, as two streams,
each written to a :class:`LogFile` that can be reopened (log rotation)."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import (
    FilteringLogObserver,
    ILogFilterPredicate,
    ILogObserver,
    LogEvent,
    Logger,
    LogLevel,
    LogLevelFilterPredicate,
    PredicateResult,
    eventAsJSON,
    formatEventAsClassicLogText,
    globalLogBeginner,
)
from zope.interface import implementer

from frontend.proxy.accesslog import access_json, format_access, is_access_event

__all__ = [
    "LEVELS",
    "LogFile",
    "LogWriter",
    "Logging",
    "open_error_log",
    "reopen_all",
    "start_logging",
]

log = Logger()

LEVELS = {
    "debug": LogLevel.debug,
    "info": LogLevel.info,
    "warn": LogLevel.warn,
    "error": LogLevel.error,
}

_FLAGS = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC
_MODE = 0o640  # logs name users and their addresses


class LogFile:
    """Where a log stream goes: a file descriptor, and the path it was opened
    from if any.

    ``LogFile.open(path)`` opens ``path`` for appending; with ``fd`` (2 for
    the error log), the file replaces that descriptor, so that whatever the
    process writes there goes to the file too.  :meth:`reopen` opens the
    path again onto the same descriptor (after ``mv`` of the file by a log
    rotation: the new file is created); a stream without a path (stdout,
    stderr as inherited) is left as it is.  A :meth:`write` is one
    ``write(2)`` of whole lines on an ``O_APPEND`` descriptor (unless the
    kernel takes only part of it), so the processes sharing a file
    (``--workers``) do not tear each other's lines on a local file system.
    """

    def __init__(self, fd: int, path: str | None = None) -> None:
        self.fd = fd
        self.path = path

    @classmethod
    def open(cls, path: str, fd: int | None = None) -> LogFile:
        if fd is None:
            return cls(os.open(path, _FLAGS, _MODE), path)
        self = cls(fd, path)
        self.reopen()
        return self

    def write(self, data: bytes) -> None:
        while data:
            written = os.write(self.fd, data)
            data = data[written:]

    def reopen(self) -> None:
        """Open the path again onto this descriptor (a no-op without a path)."""
        if self.path is None:
            return
        new = os.open(self.path, _FLAGS, _MODE)
        try:
            # fd 2 stays inheritable (the children's stderr); others do not.
            os.dup2(new, self.fd, inheritable=self.fd <= 2)  # noqa: PLR2004 - stdin, stdout, stderr
        finally:
            os.close(new)


def open_error_log(path: str) -> LogFile | None:
    """``--error-log PATH``: None for ``-`` (stderr as inherited); else the
    file, which takes over fd 2, so that what Python itself writes there (a
    traceback, a warning) is in it too."""
    if path == "-":
        return None
    return LogFile.open(path, sys.stderr.fileno())


@implementer(ILogObserver)
class LogWriter:
    """Writes rendered events to a :class:`LogFile`; with a ``clock``, in
    batches at most ``FLUSH_DELAY`` seconds apart (the access log: one write
    a request is costly), or once ``FLUSH_SIZE`` bytes wait."""

    FLUSH_DELAY = 0.2
    FLUSH_SIZE = 65536

    def __init__(
        self,
        file: LogFile,
        render: Callable[[LogEvent], bytes],
        clock: IReactorTime | None = None,
    ) -> None:
        self.file = file
        self._render = render
        self._clock = clock
        self._pending: IDelayedCall | None = None
        self._lines: list[bytes] = []
        self._size = 0

    def __call__(self, event: LogEvent) -> None:
        line = self._render(event)
        if not line:
            return
        if self._clock is None:
            self.file.write(line)
            return
        self._lines.append(line)
        self._size += len(line)
        if self._size >= self.FLUSH_SIZE:
            self.flush()
        elif self._pending is None:
            self._pending = self._clock.callLater(self.FLUSH_DELAY, self.flush)

    def flush(self) -> None:
        if self._pending is not None and self._pending.active():
            self._pending.cancel()
        self._pending = None
        lines, self._lines, self._size = self._lines, [], 0
        if lines:
            self.file.write(b"".join(lines))

    def reopen(self) -> None:
        """Write out what waits, then reopen the file (see :meth:`LogFile.reopen`)."""
        self.flush()
        self.file.reopen()


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
    the access stream holds; call it at shutdown.  ``reopen`` flushes, then
    reopens both log files by path (SIGUSR1).
    """

    access: Callable[[LogEvent], None]
    flush: Callable[[], None]
    reopen: Callable[[], None]


def _line(text: str) -> bytes:
    if not text:
        return b""
    return (text if text.endswith("\n") else text + "\n").encode("utf-8", "backslashreplace")


def _classic(event: LogEvent) -> bytes:
    return _line(formatEventAsClassicLogText(event) or "")


def _json(event: LogEvent) -> bytes:
    return _line(eventAsJSON(event))


def start_logging(
    *,
    access: LogFile | None = None,
    errors: LogFile | None = None,
    level: str = "info",
    json: bool = False,
    clock: IReactorTime | None = None,
) -> Logging:
    """Send access events to ``access`` (default: stdout) and everything
    else to ``errors`` (default: stderr).

    The access log is a combined-format line per request
    (:func:`~frontend.proxy.accesslog.format_access`), or with ``json`` a
    JSON line (:func:`~frontend.proxy.accesslog.access_json`); the rest is
    twisted.logger's classic text, or its JSON event format.  With ``clock``
    the access log is written in batches; call the returned ``flush`` at
    shutdown to write what is left.
    """
    access_file = access if access is not None else LogFile(sys.stdout.fileno())
    errors_file = errors if errors is not None else LogFile(sys.stderr.fileno())
    only_access = _AccessPredicate(PredicateResult.yes, PredicateResult.no)
    not_access = _AccessPredicate(PredicateResult.no, PredicateResult.maybe)

    levels = LogLevelFilterPredicate(defaultLogLevel=LEVELS[level])
    access_writer = LogWriter(access_file, access_json if json else format_access, clock)
    errors_writer = LogWriter(errors_file, _json if json else _classic)
    globalLogBeginner.beginLoggingTo(
        [
            FilteringLogObserver(access_writer, [only_access]),
            FilteringLogObserver(errors_writer, [not_access, levels]),
        ],
        redirectStandardIO=False,
    )

    return Logging(
        access=access_writer,
        flush=access_writer.flush,
        reopen=lambda: reopen_all([access_writer, errors_writer]),
    )


def reopen_all(writers: Sequence[LogWriter]) -> None:
    """Reopen each writer's file (SIGUSR1); one that cannot be reopened (its
    directory gone, say) keeps its old file, and the error log says why."""
    sys.stderr.flush()  # what Python itself wrote to fd 2 goes to the old file
    for writer in writers:
        try:
            writer.reopen()
        except OSError as e:
            # a message for the operator, no traceback: TRY400 does not apply
            log.error("cannot reopen log file {path}: {e}", path=writer.file.path, e=e)  # noqa: TRY400
    log.info("log files reopened")
