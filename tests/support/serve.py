"""Run ``feproxy serve`` as a real child process for tests."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

from frontend.loadtest.procs import ChildError, memory_kib, spawn, stop_process, wait_port

ROOT = Path(__file__).resolve().parents[2]

__all__ = ["ROOT", "ServeProcess", "established_to", "rss_kib", "wait_port"]

#: A memory figure of process ``pid`` from /proc, in KiB.
rss_kib = memory_kib


class ServeProcess:
    """``feproxy serve --config FILE`` in its own session; killed with the test run."""

    def __init__(self, proc: subprocess.Popen[bytes], access: Path, errors: Path) -> None:
        self.proc = proc
        self.access_path = access
        self.errors_path = errors

    @classmethod
    def start(
        cls,
        config: Path,
        wait_for: tuple[str, int] | None,
        *extra: str,
        env: dict[str, str] | None = None,
    ) -> ServeProcess:
        """``feproxy serve --config CONFIG EXTRA...``, logs beside the config file
        (``env``: variables to set in its environment)."""
        args = ["serve", "--config", str(config), *extra]
        return cls.start_command(args, config, wait_for, env=env)

    @classmethod
    def start_command(
        cls,
        args: list[str],
        logs: Path,
        wait_for: tuple[str, int] | None,
        *,
        env: dict[str, str] | None = None,
        wrapper: Sequence[str] = (),
    ) -> ServeProcess:
        """``feproxy ARGS...`` with its logs in LOGS.access.log and LOGS.err.log
        (``wrapper``: a command that executes feproxy's, e.g. a sandbox)."""
        access = logs.with_suffix(".access.log")
        errors = logs.with_suffix(".err.log")
        argv = [*wrapper, sys.executable, "-m", "frontend", *args]
        with access.open("wb") as out, errors.open("wb") as err:
            proc = spawn(argv, stdout=out, stderr=err, cwd=ROOT, env={**os.environ, **(env or {})})
        self = cls(proc, access, errors)
        if wait_for is not None:
            try:
                wait_port(*wait_for, alive=lambda: proc.poll() is None)
            except ChildError:
                self.stop()
                raise AssertionError(
                    f"feproxy {args[0]} did not listen:\n{self.errors()}"
                ) from None
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
        return stop_process(self.proc, 10.0)

    def __enter__(self) -> ServeProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def established_to(pid: int, port: int, *, local: bool = False) -> int:
    """How many ESTABLISHED TCP connections of ``pid`` go to remote ``port``
    (with ``local``: are accepted on local ``port``)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = str(fd.readlink())
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
