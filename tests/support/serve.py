"""Run ``feproxy serve`` as a real child process for tests."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

from tests.support.procs import die_with_parent

ROOT = Path(__file__).resolve().parents[2]

__all__ = ["ServeProcess", "established_to", "rss_kib", "wait_port", "ROOT"]


def wait_port(
    host: str, port: int, timeout: float = 15.0, alive: Callable[[], bool] = lambda: True
) -> None:
    """Wait until ``host:port`` accepts connections (while ``alive()`` holds)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, port), timeout=1):
                return
        except OSError:
            if time.monotonic() > deadline or not alive():
                raise
            time.sleep(0.05)


def rss_kib(pid: int, field: str = "VmRSS") -> int:
    """A memory figure of process ``pid`` from /proc, in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


class ServeProcess:
    """``feproxy serve --config FILE`` in its own session; killed with the test run."""

    def __init__(self, proc: subprocess.Popen[str], access: Path, errors: Path) -> None:
        self.proc = proc
        self.access_path = access
        self.errors_path = errors

    @classmethod
    def start(cls, config: Path, wait_for: tuple[str, int] | None, *extra: str) -> ServeProcess:
        access = config.with_suffix(".access.log")
        errors = config.with_suffix(".err.log")
        out: IO[Any] = open(access, "w")  # noqa: SIM115 - owned by the child
        err: IO[Any] = open(errors, "w")  # noqa: SIM115
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "frontend.cli",
                "serve",
                "--config",
                str(config),
                *extra,
            ],
            stdout=out,
            stderr=err,
            cwd=ROOT,
            text=True,
            preexec_fn=die_with_parent(),
            start_new_session=True,
        )
        out.close()
        err.close()
        self = cls(proc, access, errors)
        if wait_for is not None:
            try:
                wait_port(*wait_for, alive=lambda: proc.poll() is None)
            except OSError:
                self.stop()
                raise AssertionError(f"feproxy serve did not listen:\n{self.errors()}") from None
        return self

    @property
    def pid(self) -> int:
        return self.proc.pid

    def access_lines(self) -> list[str]:
        return self.access_path.read_text().splitlines()

    def errors(self) -> str:
        return self.errors_path.read_text()

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        return self.proc.returncode

    def __enter__(self) -> ServeProcess:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def established_to(pid: int, port: int, local: bool = False) -> int:
    """How many ESTABLISHED TCP connections of ``pid`` go to remote ``port``
    (with ``local``: are accepted on local ``port``)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    count = 0
    for line in _tcp_lines(pid):
        parts = line.split()
        address, state, inode = parts[1 if local else 2], parts[3], parts[9]
        if state == "01" and int(address.split(":")[1], 16) == port and inode in inodes:
            count += 1
    return count


def _tcp_lines(pid: int) -> Iterator[str]:
    for name in ("tcp", "tcp6"):
        p = Path(f"/proc/{pid}/net/{name}")
        if p.exists():
            yield from p.read_text().splitlines()[1:]
