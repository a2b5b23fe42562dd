"""Child processes of the load test, the benchmark and the test suite's harnesses.

Every child runs in its own session with a parent-death signal, so that a
run killed even by SIGKILL leaves nothing behind (:func:`spawn`), and is
stopped with SIGTERM (SIGKILL if it lingers: :func:`stop_process`).  Output
goes to files, never to pipes that nobody drains.  :class:`Child` is one such
process with its output in a work directory.

``bench/`` and ``tests/support/`` use these helpers too (production code may
not import from tests/, and the benchmark must not need pytest).

These helpers block: they are used to start and stop processes before and
after the reactor runs, never on the reactor thread.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import IO

__all__ = [
    "Child",
    "ChildError",
    "die_with_parent",
    "free_port",
    "memory_kib",
    "spawn",
    "stop_process",
    "wait_port",
]

_PR_SET_PDEATHSIG = 1


class ChildError(RuntimeError):
    """A child process did not start, or exited early."""


def die_with_parent() -> Callable[[], None]:
    """A ``preexec_fn``: the child gets SIGTERM when its parent dies (even by
    SIGKILL).  Pair it with ``start_new_session=True``.

    libc and prctl are looked up here, before the fork, so the child only
    calls into C between fork and exec.
    """
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    prctl = libc.prctl

    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)

    return preexec


def spawn(
    argv: Sequence[str],
    *,
    stdout: int | IO[bytes] | None,
    stderr: int | IO[bytes] | None,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    """Start ``argv`` in its own session, stdin from /dev/null, with SIGTERM
    when this process dies (:func:`die_with_parent`)."""
    return subprocess.Popen(
        list(argv),
        stdin=subprocess.DEVNULL,
        stdout=stdout,
        stderr=stderr,
        cwd=cwd,
        env=env,
        start_new_session=True,
        # Safe here: the hook only calls prctl (no lock, no allocation), and
        # spawn runs before the reactor's threads exist.
        preexec_fn=die_with_parent(),  # noqa: PLW1509
    )


def stop_process(
    process: subprocess.Popen[bytes] | subprocess.Popen[str], timeout: float = 10.0
) -> int:
    """SIGTERM ``process`` if it still runs and wait (SIGKILL after ``timeout``
    s); its exit status."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    return process.returncode


def _can_bind(address: str, port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind((address, port))
        except OSError:
            return False
    return True


def free_port(addresses: Iterable[str] = ("127.0.0.1",), exclude: Iterable[int] = ()) -> int:
    """A TCP port that can be bound on every one of ``addresses`` right now."""
    excluded = set(exclude)
    wanted = tuple(addresses)
    for _ in range(200):
        with socket.socket() as probe:
            probe.bind((wanted[0], 0))
            port: int = probe.getsockname()[1]
        if port not in excluded and all(_can_bind(a, port) for a in wanted):
            return port
    raise ChildError(f"no TCP port free on all of {', '.join(wanted)}")


def wait_port(
    host: str, port: int, timeout: float = 15.0, alive: Callable[[], bool] = lambda: True
) -> None:
    """Wait until ``host:port`` accepts a connection, while ``alive()`` holds."""
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=1):
            return
        if not alive():
            raise ChildError(f"exited before listening on {host}:{port}")
        if time.monotonic() > deadline:
            raise ChildError(f"not listening on {host}:{port} after {timeout:g} s")
        time.sleep(0.05)


def memory_kib(pid: int, field: str = "VmRSS") -> int:
    """A memory figure of ``pid`` from /proc/PID/status (VmRSS, VmHWM), in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


class Child:
    """One child process, its output in ``<workdir>/<name>.out`` and ``.err``."""

    def __init__(self, name: str, argv: Sequence[str], workdir: Path, cwd: Path) -> None:
        self.name = name
        self.stdout_path = workdir / f"{name}.out"
        self.stderr_path = workdir / f"{name}.err"
        with self.stdout_path.open("wb") as out, self.stderr_path.open("wb") as err:
            self.process = spawn(argv, stdout=out, stderr=err, cwd=cwd)

    @property
    def pid(self) -> int:
        """The child's process id."""
        return self.process.pid

    @property
    def running(self) -> bool:
        """Whether the child has not exited yet."""
        return self.process.poll() is None

    def wait_line(self, text: str, timeout: float) -> None:
        """Wait until the child's standard output has a line ``text``."""
        deadline = time.monotonic() + timeout
        while True:
            lines = self.stdout_path.read_text(errors="replace").splitlines()
            if text in lines:
                return
            if not self.running:
                raise ChildError(f"{self.name} exited with status {self.process.returncode}")
            if time.monotonic() > deadline:
                raise ChildError(f"{self.name} not ready after {timeout:g} s")
            time.sleep(0.05)

    def wait_port(self, host: str, port: int, timeout: float) -> None:
        """Wait until the child listens on ``host:port``."""
        try:
            wait_port(host, port, timeout, lambda: self.running)
        except ChildError as error:
            raise ChildError(f"{self.name} {error}") from None

    def tail(self, lines: int = 5) -> str:
        """The last ``lines`` lines of the child's standard error."""
        try:
            text = self.stderr_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.strip().splitlines()[-lines:])

    def signal(self, signum: int) -> None:
        """Send ``signum`` to the child (if it still runs)."""
        if self.running:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signum)

    def stop(self, timeout: float = 10.0) -> int:
        """SIGTERM the child and wait (SIGKILL after ``timeout`` s); its status."""
        return stop_process(self.process, timeout)
