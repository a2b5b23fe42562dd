"""SIGTERM and SIGINT stop a process once, gracefully.

Twisted's own handlers stop the reactor on every SIGTERM; a second one that
arrives while the process is already stopping is either an error logged
("Can't stop reactor that isn't running") or, once the interpreter has begun
to exit and put the default handlers back, kills the process with status
-15.  Both happen in practice: a ``--workers`` master relays the SIGTERM it
is sent, and systemd by default sends SIGTERM to every process of the unit.

So the first stop signal stops the reactor and makes every later SIGTERM,
SIGINT and SIGHUP ignored (SIG_IGN, which the interpreter keeps while it
exits; a reload during the stop would open listeners again).  The stop keeps
its own deadline (``stop_timeout``); SIGKILL is the way to cut it short.
"""

from __future__ import annotations

import signal
from contextlib import suppress
from types import FrameType
from typing import TYPE_CHECKING, Final

from twisted.internet.error import ReactorNotRunning
from twisted.logger import Logger

if TYPE_CHECKING:
    from frontend.ops.reactor import IServeReactor

__all__ = ["IGNORED_ONCE_STOPPING", "STOP_SIGNALS", "stop_on_signals"]

#: The signals that stop the process.
STOP_SIGNALS: Final = (signal.SIGTERM, signal.SIGINT)

#: The signals ignored once a stop has begun.
IGNORED_ONCE_STOPPING: Final = (*STOP_SIGNALS, signal.SIGHUP)

log = Logger()


def stop_on_signals(reactor: IServeReactor) -> None:
    """Install the handlers of :data:`STOP_SIGNALS` (once the reactor runs:
    they replace those it installs as it starts)."""

    def stopping(signum: int) -> None:
        log.info("received {name}: stopping", name=signal.Signals(signum).name)
        with suppress(ReactorNotRunning):  # already stopping (start-up failed)
            reactor.stop()

    def on_stop(signum: int, _frame: FrameType | None) -> None:
        for sig in IGNORED_ONCE_STOPPING:
            signal.signal(sig, signal.SIG_IGN)
        reactor.callFromThread(stopping, signum)

    for sig in STOP_SIGNALS:
        signal.signal(sig, on_stop)
