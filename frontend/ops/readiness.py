"""What a ``--workers`` master hears from its workers, summed up for systemd.

Each worker gets one end of a datagram socket pair (``--notify-fd``) and
speaks sd_notify's protocol on it exactly as a single ``feproxy serve``
speaks it to systemd (:class:`frontend.ops.notify.Notifier`); the workers'
environment has no ``NOTIFY_SOCKET``, so only the master talks to systemd
(``NotifyAccess=main``).  The master:

- sends ``READY=1`` once every worker has said ``READY=1``, that is once
  every worker has its listeners open (once in its life: a worker started
  again later does not make it say so again);
- on SIGHUP sends ``RELOADING=1``, relays the signal, and sends ``READY=1``
  when every worker has reported the end of its own reload (``RELOADING=1``
  then ``READY=1``; a worker started again meanwhile counts as reloaded, it
  read the file when it started); the ``STATUS`` says how many refused the
  new file;
- on SIGTERM or SIGINT sends ``STOPPING=1``;
- with a watchdog, passes ``WATCHDOG_USEC`` on to the workers (which then
  ping the master every half timeout from their reactors) and pings systemd
  every half timeout while each worker has pinged within the timeout: a
  worker whose reactor hangs stops the master's pings, and systemd restarts
  the service.

The master's signal handler only sets flags (:meth:`WorkerNotices.signalled`);
:meth:`WorkerNotices.wait`, called by the master's loop, acts on them before
it reads what the workers said.
"""

from __future__ import annotations

import select
import signal
import socket
import time
from collections.abc import Callable, Mapping

from frontend.ops.notify import RELOAD_REFUSED, Notifier

__all__ = ["WorkerNotices"]

#: The variables of systemd's that are the master's alone.
_MASTER_ONLY = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")


def _fields(data: bytes) -> dict[str, str]:
    fields = {}
    for line in data.decode("utf-8", "replace").splitlines():
        name, sep, value = line.partition("=")
        if sep:
            fields[name] = value
    return fields


class WorkerNotices:
    """The master's side of ``count`` workers' notification channels."""

    def __init__(
        self,
        notifier: Notifier,
        count: int,
        status: str,
        *,
        now: Callable[[], float] = time.monotonic,
    ) -> None:
        """``status``: the STATUS line of the master's ``READY=1``."""
        self._notifier = notifier
        self._count = count
        self._status = status
        self._now = now
        self._channels: list[socket.socket | None] = [None] * count
        self._child_ends: list[socket.socket | None] = [None] * count
        self._ready = [False] * count
        self._last_ping = [now()] * count
        self.announced = False
        self._hup = False
        self._stop = False
        self._stopping = False
        self._pending: set[int] | None = None  # workers still reloading
        self._seen: set[int] = set()  # workers that said RELOADING=1 since SIGHUP
        self._refused = 0
        self._next_ping = 0.0

    def child_environ(self, environ: Mapping[str, str]) -> dict[str, str]:
        """A worker's environment: no NOTIFY_SOCKET; the master's watchdog timeout."""
        env = {k: v for k, v in environ.items() if k not in _MASTER_ONLY}
        if self._notifier.watchdog is not None:
            env["WATCHDOG_USEC"] = str(self._notifier.watchdog)
        return env

    def open_channel(self, index: int) -> int:
        """A new channel for worker ``index``: the descriptor to hand it."""
        self._close(index)
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        ours.setblocking(False)  # noqa: FBT003 - socket's own positional flag
        theirs.set_inheritable(True)
        self._channels[index] = ours
        self._child_ends[index] = theirs
        return theirs.fileno()

    def spawned(self, index: int) -> None:
        """Worker ``index`` runs (it holds its end now): start afresh with it."""
        theirs = self._child_ends[index]
        if theirs is not None:
            theirs.close()
            self._child_ends[index] = None
        self._ready[index] = False
        self._last_ping[index] = self._now()  # its start-up is its grace
        if self._pending is not None:
            self._pending.discard(index)  # it read the file when it started
            self._finish_reload()

    def signalled(self, signum: int) -> None:
        """The master got ``signum``: SIGHUP starts a reload, SIGTERM and SIGINT
        the shutdown (safe in a signal handler: :meth:`wait` acts on it)."""
        if signum == signal.SIGHUP:
            self._hup = True
        elif signum in (signal.SIGTERM, signal.SIGINT):
            self._stop = True

    def wait(self, timeout: float) -> None:
        """Wait up to ``timeout`` s for what the workers say, and pass it on."""
        self._take_signals()  # now, if no worker says anything
        open_channels = [c for c in self._channels if c is not None]
        if open_channels:
            readable, _, _ = select.select(open_channels, [], [], timeout)
        else:  # pragma: no cover - the master always has workers
            time.sleep(timeout)
            readable = []
        for channel in readable:
            index = self._channels.index(channel)
            while True:
                try:
                    data = channel.recv(4096)
                except BlockingIOError:
                    break
                except OSError:  # pragma: no cover - a socketpair's recv fails on nothing else
                    break
                self.heard(index, _fields(data))
        self._watchdog()

    def heard(self, index: int, fields: Mapping[str, str]) -> None:
        """Worker ``index`` sent ``fields``."""
        # A signal handled since the last look comes first: the master relays a
        # SIGHUP after setting its flag, so a report of that reload comes after.
        self._take_signals()
        if fields.get("WATCHDOG") == "1":
            self._last_ping[index] = self._now()
        if fields.get("RELOADING") == "1" and self._pending is not None:
            self._seen.add(index)
        if fields.get("READY") == "1":
            if not self._ready[index]:
                self._ready[index] = True
                if not self.announced and all(self._ready):
                    self.announced = True
                    self._notifier.started(self._status)
            elif self._pending is not None and index in self._seen and index in self._pending:
                self._pending.discard(index)
                if fields.get("STATUS", "").startswith(RELOAD_REFUSED):
                    self._refused += 1
                self._finish_reload()

    def close(self) -> None:
        """Close every channel and the notifier."""
        for index in range(self._count):
            self._close(index)
        self._notifier.close()

    def _close(self, index: int) -> None:
        for ends in (self._channels, self._child_ends):
            sock = ends[index]
            if sock is not None:
                sock.close()
                ends[index] = None

    def _take_signals(self) -> None:
        if self._stop and not self._stopping:
            self._stopping = True
            self._pending = None
            self._notifier.stopping()
        if self._hup:
            self._hup = False
            # Before READY the workers reload as they start: nothing to announce.
            if self.announced and not self._stopping:
                self._pending = set(range(self._count))
                self._seen = set()
                self._refused = 0
                self._notifier.reloading()

    def _finish_reload(self) -> None:
        if self._pending:
            return
        self._pending = None
        if self._refused:
            status = (
                f"{RELOAD_REFUSED} by {self._refused} of {self._count} workers, "
                "which keep the old one (see the log)"
            )
        else:
            status = f"configuration reloaded by {self._count} workers"
        self._notifier.reloaded(status)

    def _watchdog(self) -> None:
        usec = self._notifier.watchdog
        if usec is None:
            return
        now = self._now()
        if now < self._next_ping:
            return
        if all(now - last < usec / 1_000_000 for last in self._last_ping):
            self._notifier.ping()
            self._next_ping = now + usec / 2_000_000
