"""Child processes of the benchmark: started pinned, always stopped.

Every child runs in its own session (so that its own children, such as
``feproxy serve --workers N``, are stopped with it), gets SIGTERM when the
benchmark dies (``PR_SET_PDEATHSIG``, even on SIGKILL), and is pinned to a
set of cores with ``taskset``.  :meth:`Children.stop_all` stops them in
reverse order of start: SIGTERM to the session's process group, then
SIGKILL after a grace period.  Starting, free ports, waiting for a port and
memory figures come from :mod:`frontend.loadtest.procs`.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from frontend.loadtest import procs
from frontend.loadtest.procs import ChildError, free_port, memory_kib, spawn

__all__ = [
    "Child",
    "Children",
    "cpu_seconds",
    "free_port",
    "memory_kib",
    "reset_peak_rss",
    "wait_port",
]

_TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(group: int) -> float:
    """User + system CPU time of every process in process group ``group`` (all threads)."""
    total = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue  # gone meanwhile
        # The command name (field 2) may hold spaces: fields after its ")".
        fields = stat[stat.rindex(")") + 2 :].split()
        if int(fields[2]) == group:  # pgrp
            total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / _TICK


def reset_peak_rss(pid: int) -> bool:
    """Reset ``pid``'s VmHWM to its current RSS (Linux ``clear_refs`` 5)."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    except OSError:
        return False
    return True


@dataclass
class Child:
    """One started child process and where its output goes."""

    name: str
    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def log_tail(self, lines: int = 15) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def check_alive(self) -> None:
        """Raise if the child has exited (with the end of its log)."""
        code = self.process.poll()
        if code is not None:
            raise RuntimeError(f"{self.name} exited with status {code}:\n{self.log_tail()}")


class Children:
    """The benchmark's children, pinned with taskset and stopped together."""

    def __init__(self, workdir: Path, *, pin: bool = True) -> None:
        self._workdir = workdir
        self._taskset = shutil.which("taskset") if pin else None
        self._started: list[Child] = []

    @property
    def pinning(self) -> bool:
        return self._taskset is not None

    def command(self, argv: Sequence[str], cpus: str | None) -> list[str]:
        """``argv`` behind ``taskset -c cpus`` when pinning."""
        if cpus is None or self._taskset is None:
            return list(argv)
        return [self._taskset, "-c", cpus, *argv]

    def start(
        self,
        name: str,
        argv: Sequence[str],
        *,
        cpus: str | None,
        cwd: Path,
        stdout: int | IO[Any] | None = None,
        env: dict[str, str] | None = None,
    ) -> Child:
        """Start ``argv`` (stderr, and stdout unless given, to ``<name>.log``)."""
        log_path = self._workdir / f"{name}.log"
        with log_path.open("ab") as log:
            process = spawn(
                self.command(argv, cpus),
                stdout=log if stdout is None else stdout,
                stderr=log,
                cwd=cwd,
                env=env,
            )
        child = Child(name, process, log_path)
        self._started.append(child)
        return child

    def run(self, argv: Sequence[str], *, cpus: str | None, timeout: float) -> str:
        """Run ``argv`` to its end (killed after ``timeout`` s); its stdout."""
        process = spawn(self.command(argv, cpus), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        child = Child(argv[0], process, Path(os.devnull))
        self._started.append(child)
        try:
            out, err = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.stop(child)
            raise RuntimeError(f"{' '.join(argv)} did not finish in {timeout:.0f} s") from None
        finally:
            if child in self._started and process.poll() is not None:
                self._started.remove(child)
        if process.returncode != 0:
            raise RuntimeError(
                f"{' '.join(argv)} failed ({process.returncode}): {err.decode(errors='replace')}"
            )
        return out.decode("utf-8", "replace")

    def stop(self, child: Child, grace: float = 5.0) -> None:
        """SIGTERM ``child``'s process group, SIGKILL it after ``grace`` s."""
        process = child.process
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(grace)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait(grace)
        # Workers or other members of the group that outlived their leader.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
        if child in self._started:
            self._started.remove(child)

    def stop_all(self) -> None:
        """Stop every child still running, last started first."""
        for child in reversed(list(self._started)):
            self.stop(child)


def wait_port(host: str, port: int, child: Child, timeout: float = 30.0) -> None:
    """Wait until ``host:port`` accepts connections; fail early if ``child`` died."""
    try:
        procs.wait_port(host, port, timeout, lambda: child.process.poll() is None)
    except ChildError:
        child.check_alive()
        raise RuntimeError(
            f"{child.name} does not listen on {host}:{port} after {timeout:.0f} s:\n"
            f"{child.log_tail()}"
        ) from None
