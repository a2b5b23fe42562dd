"""``feproxy serve --workers N``: N processes sharing the listening sockets.

The master opens the listening sockets of ``frontend.listen``, one per
worker for each endpoint, all bound to the same address with SO_REUSEPORT,
then runs N ``feproxy serve`` workers that inherit theirs: the kernel spreads
new connections evenly over the workers (with one shared socket, the first
worker to wake would accept nearly everything).  A worker that is stuck
still receives its share, which is why dead workers are replaced at once.  Signals reach
every worker: SIGHUP reloads each one's configuration, SIGUSR1 reopens the
log files (the master reopens its own error log too), SIGTERM/SIGINT stop
them gracefully; the master exits when they have.  A worker that dies on
its own is started again (at most once a second).

Under systemd (``NOTIFY_SOCKET``) only the master talks to systemd: each
worker tells the master over a datagram socket pair when its listeners are
open, when its reloads start and end, and pings it for the watchdog;
:mod:`frontend.ops.readiness` sums that up.

Limits: the listening sockets are fixed when the master starts (a reload can
change everything else); ``frontend.admin`` is served by worker 0 only, so
its metrics are that worker's.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from types import FrameType

from frontend.config import Config
from frontend.ops.listen import DEFAULT_BACKLOG, parse_endpoint
from frontend.ops.logs import LogFile, open_error_log
from frontend.ops.notify import Notifier
from frontend.ops.readiness import WorkerNotices
from frontend.ops.signals import IGNORED_ONCE_STOPPING

__all__ = ["RELAYED", "open_sockets", "run_master"]

#: The signals the master passes on to its workers.
RELAYED = frozenset({signal.SIGHUP, signal.SIGUSR1, signal.SIGTERM, signal.SIGINT})
#: The relayed signals that do not stop the workers.
_KEEP_RUNNING = frozenset({signal.SIGHUP, signal.SIGUSR1})


def open_sockets(listen: Sequence[str]) -> dict[str, socket.socket]:
    """A bound, listening, inheritable SO_REUSEPORT socket for each TCP or TLS
    endpoint (call it once per worker: each call binds the same ports again)."""
    sockets: dict[str, socket.socket] = {}
    for desc in listen:
        kind, args, kw = parse_endpoint(desc)
        if kind not in ("tcp", "tcp6", "ssl"):
            raise ValueError(f"{desc}: only tcp and ssl listeners can be shared by workers")
        interface = kw.get("interface", "::" if kind == "tcp6" else "")
        family = socket.AF_INET6 if ":" in interface else socket.AF_INET
        s = socket.socket(family, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        s.bind((interface, int(args[0] if args else kw["port"])))
        s.listen(int(kw.get("backlog", DEFAULT_BACKLOG)))
        s.set_inheritable(True)
        sockets[desc] = s
    return sockets


def _worker_command(
    args: argparse.Namespace, index: int, sockets: dict[str, socket.socket], notify_fd: int
) -> list[str]:
    command = [
        sys.executable,
        "-m",
        "frontend",
        "serve",
        "--config",
        args.config,
        "--log-level",
        args.log_level,
        "--access-log",
        args.access_log,
        "--error-log",
        args.error_log,
        "--worker-index",
        str(index),
        "--notify-fd",
        str(notify_fd),
    ]
    if args.log_json:
        command.append("--log-json")
    for desc, s in sockets.items():
        command += ["--inherit", f"{s.fileno()}={desc}"]
    return command


def _reopen(errors: LogFile) -> None:
    """The master's error log, reopened (SIGUSR1)."""
    sys.stderr.flush()
    try:
        errors.reopen()
    except OSError as e:  # the old file stays in use
        _warn(f"cannot reopen {errors.path}: {e}")


def _warn(message: str) -> None:
    """The master's warnings go to standard error (it has no log observer)."""
    print(f"feproxy: {message}", file=sys.stderr, flush=True)


def run_master(args: argparse.Namespace, config: Config) -> int:
    """Open the sockets, run the workers, relay signals; returns the exit status."""
    try:
        sockets = [open_sockets(config.frontend.listen) for _ in range(args.workers)]
        errors = open_error_log(args.error_log)
    except (OSError, ValueError) as e:
        print(f"feproxy: cannot start: {e}", file=sys.stderr)
        return 1
    workers: list[subprocess.Popen[bytes] | None] = [None] * args.workers
    started = [0.0] * args.workers
    stopping: list[int] = []
    fe = config.frontend
    notices = WorkerNotices(
        Notifier.from_environ(os.environ, pid=os.getpid(), warn=_warn),
        args.workers,
        f"feproxy {fe.name} serving on {', '.join(fe.listen)} with {args.workers} workers",
    )

    def spawn(i: int) -> None:
        started[i] = time.monotonic()
        channel = notices.open_channel(i)
        fds = [*(s.fileno() for s in sockets[i].values()), channel]
        # The worker starts with the relayed signals blocked (a signal mask is
        # inherited across fork and exec) and unblocks them once its handlers
        # are in place: a SIGTERM relayed to a worker still starting waits
        # for it instead of killing it.
        signal.pthread_sigmask(signal.SIG_BLOCK, RELAYED)
        try:
            workers[i] = subprocess.Popen(
                _worker_command(args, i, sockets[i], channel),
                pass_fds=fds,
                env=notices.child_environ(os.environ),
            )
        finally:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, RELAYED)
            notices.spawned(i)

    def relay(signum: int, _frame: FrameType | None) -> None:
        notices.signalled(signum)
        if signum not in _KEEP_RUNNING:
            stopping.append(signum)
            # The first stop signal is relayed; later ones (and SIGHUP) are
            # ignored, here as in the workers (see frontend.ops.signals).
            for sig in IGNORED_ONCE_STOPPING:
                signal.signal(sig, signal.SIG_IGN)
        elif signum == signal.SIGUSR1 and errors is not None:
            _reopen(errors)
        for w in workers:
            if w is not None and w.poll() is None:
                w.send_signal(signum)

    for sig in RELAYED:
        signal.signal(sig, relay)
    for i in range(args.workers):
        spawn(i)
    print(
        f"feproxy: master {os.getpid()} running {args.workers} workers", file=sys.stderr, flush=True
    )
    return _supervise(workers, started, stopping, spawn, notices)


def _supervise(
    workers: list[subprocess.Popen[bytes] | None],
    started: list[float],
    stopping: list[int],
    spawn: Callable[[int], None],
    notices: WorkerNotices,
) -> int:
    """Start again a worker that dies, until a stop signal; then wait for all
    of them.  The master's exit status: 1 if a worker's stop failed."""
    status = 0
    while True:
        alive = False
        for i, w in enumerate(workers):
            if w is None:
                continue
            code = w.poll()
            if code is None:
                alive = True
            elif not stopping:
                _warn(f"worker {i} exited with {code}; starting it again")
                time.sleep(max(0.0, 1.0 - (time.monotonic() - started[i])))
                spawn(i)
                alive = True
            elif code != 0:
                status = 1
        if not alive:
            notices.close()
            return status
        notices.wait(0.1)
