"""Telling systemd how the service is doing: sd_notify's protocol, without libsystemd.

Under ``Type=notify`` systemd puts a datagram socket's address in
``NOTIFY_SOCKET`` (a path, or ``@name`` for an abstract socket) and reads
``VAR=value`` lines from it.  :class:`Notifier` sends them over an AF_UNIX
SOCK_DGRAM socket of its own, non-blocking: a send that fails (no such
socket, its queue full) is dropped, logged at warn once, and never raises.
Without ``NOTIFY_SOCKET`` every call does nothing.

What feproxy says, and when:

- ``READY=1`` with ``MAINPID`` and a ``STATUS`` line once the listeners are
  open (:meth:`Notifier.started`);
- ``RELOADING=1`` with ``MONOTONIC_USEC`` (CLOCK_MONOTONIC, microseconds) when
  a SIGHUP reload starts, then ``READY=1`` when it has ended, its ``STATUS``
  saying whether the new configuration was taken (:func:`notify_reload`);
- ``STOPPING=1`` when shutdown begins (:meth:`Notifier.stopping`);
- ``WATCHDOG=1`` every ``WATCHDOG_USEC`` / 2 while the reactor turns, when
  systemd asked for it (``WATCHDOG_USEC`` set, ``WATCHDOG_PID`` unset or this
  process): :meth:`Notifier.start_watchdog`.

A ``--workers`` worker speaks the same protocol to its master over a
datagram socket pair it inherits (:meth:`Notifier.for_channel`); the master
sums its workers up for systemd (:mod:`frontend.ops.readiness`).
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Mapping

from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

__all__ = [
    "RELOAD_REFUSED",
    "Notifier",
    "monotonic_usec",
    "notify_reload",
    "reload_status",
    "watchdog_usec",
]

log = Logger()

#: The start of a reload's STATUS when the new configuration was refused.
RELOAD_REFUSED = "configuration refused"


def monotonic_usec() -> int:
    """CLOCK_MONOTONIC in microseconds, the clock of ``MONOTONIC_USEC``."""
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000


def watchdog_usec(environ: Mapping[str, str], pid: int) -> int | None:
    """The watchdog timeout systemd set for process ``pid``, in microseconds
    (None: no watchdog, or one meant for another process)."""
    owner = environ.get("WATCHDOG_PID")
    if owner is not None and owner != str(pid):
        return None
    try:
        usec = int(environ.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    return usec if usec > 0 else None


def reload_status(path: str, *, taken: bool) -> str:
    """The STATUS line that ends a reload of ``path``."""
    if taken:
        return f"configuration reloaded from {path}"
    return f"{RELOAD_REFUSED}, keeping the old one: {path} is not valid (see the log)"


def _log_warning(message: str) -> None:
    log.warn("{message}", message=message)


class Notifier:
    """Sends sd_notify messages from process ``pid`` (or nothing, without a socket).

    ``address`` is where each datagram goes (None: ``sock`` is connected);
    ``warn`` receives the one warning about a failed send.
    """

    def __init__(
        self,
        sock: socket.socket | None,
        address: str | None,
        *,
        pid: int,
        watchdog: int | None = None,
        monotonic: Callable[[], int] = monotonic_usec,
        warn: Callable[[str], None] = _log_warning,
    ) -> None:
        self._sock = sock
        self._address = address
        self.pid = pid
        #: The watchdog timeout in microseconds, or None.
        self.watchdog = watchdog
        self._monotonic = monotonic
        self._warn = warn
        self._warned = False
        self._watchdog_loop: LoopingCall | None = None

    @classmethod
    def from_environ(
        cls,
        environ: Mapping[str, str],
        *,
        pid: int,
        warn: Callable[[str], None] = _log_warning,
    ) -> Notifier:
        """The notifier systemd's variables ask for: ``NOTIFY_SOCKET``,
        ``WATCHDOG_USEC`` and ``WATCHDOG_PID``."""
        where = environ.get("NOTIFY_SOCKET", "")
        if not where.startswith(("/", "@")):
            if where:
                warn(f"NOTIFY_SOCKET={where}: not a path nor an abstract socket; not notifying")
            return cls(None, None, pid=pid, warn=warn)
        # An abstract socket's name starts with a NUL byte, written "@".
        address = "\0" + where[1:] if where.startswith("@") else where
        sock = socket.socket(
            socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC
        )
        return cls(sock, address, pid=pid, watchdog=watchdog_usec(environ, pid), warn=warn)

    @classmethod
    def for_channel(
        cls,
        fd: int,
        environ: Mapping[str, str],
        *,
        pid: int,
        warn: Callable[[str], None] = _log_warning,
    ) -> Notifier:
        """A ``--workers`` worker's notifier: the connected datagram socket ``fd``
        its master handed over (the watchdog as ``WATCHDOG_USEC`` says)."""
        sock = socket.socket(fileno=fd)
        sock.setblocking(False)  # noqa: FBT003 - socket's own positional flag
        return cls(sock, None, pid=pid, watchdog=watchdog_usec(environ, pid), warn=warn)

    @property
    def enabled(self) -> bool:
        """Whether messages go anywhere."""
        return self._sock is not None

    def send(self, *lines: str) -> bool:
        """Send ``lines`` as one message; whether it went (never raises)."""
        if self._sock is None:
            return False
        data = "\n".join(lines).encode("utf-8")
        try:
            if self._address is None:
                self._sock.send(data)
            else:
                self._sock.sendto(data, self._address)
        except OSError as e:
            if not self._warned:
                self._warned = True
                where = "the master" if self._address is None else repr(self._address)
                self._warn(f"cannot notify {where} ({lines[0]}): {e}; further failures not logged")
            return False
        return True

    def started(self, status: str) -> bool:
        """The service is up: ``READY=1``, ``MAINPID``, ``STATUS``."""
        return self.send("READY=1", f"MAINPID={self.pid}", f"STATUS={status}")

    def reloading(self, status: str = "reloading the configuration") -> bool:
        """A reload starts: ``RELOADING=1`` and ``MONOTONIC_USEC``."""
        return self.send("RELOADING=1", f"MONOTONIC_USEC={self._monotonic()}", f"STATUS={status}")

    def reloaded(self, status: str) -> bool:
        """A reload has ended (``STATUS`` says how): ``READY=1``."""
        return self.send("READY=1", f"STATUS={status}")

    def stopping(self, status: str = "stopping") -> bool:
        """Shutdown begins: ``STOPPING=1``."""
        return self.send("STOPPING=1", f"STATUS={status}")

    def ping(self) -> bool:
        """The watchdog's keep-alive: ``WATCHDOG=1``."""
        return self.send("WATCHDOG=1")

    def start_watchdog(self, clock: IReactorTime) -> LoopingCall | None:
        """Ping every half watchdog timeout on ``clock`` (a reactor that hangs
        stops pinging, and systemd restarts the service); None without a watchdog."""
        if self.watchdog is None or not self.enabled:
            return None
        loop = LoopingCall(self.ping)
        loop.clock = clock
        # ping never raises, so the loop never ends in an error.
        loop.start(self.watchdog / 2_000_000, now=True)
        self._watchdog_loop = loop
        return loop

    def close(self) -> None:
        """Stop the watchdog and close the socket (later calls do nothing)."""
        if self._watchdog_loop is not None and self._watchdog_loop.running:
            self._watchdog_loop.stop()
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def notify_reload(notifier: Notifier, reload: Callable[[str], bool], path: str) -> bool:
    """Run ``reload(path)`` between ``RELOADING=1`` and ``READY=1``; whether it took."""
    notifier.reloading(f"reloading the configuration from {path}")
    taken = reload(path)
    notifier.reloaded(reload_status(path, taken=taken))
    return taken
