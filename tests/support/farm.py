"""Run the stub back-end farm (``python -m backend_stub``) for tests.

Register with ``pytest_plugins = ["tests.support.farm"]`` to get the fixtures:

- ``farm`` (session): the farm of ``conf/topology.toml`` on free ports.
- ``clean_farm`` (function): the same farm with its records cleared and every
  server's fault reset to ``none`` before the test.

The :class:`Farm` object talks to the farm's control API with blocking
``urllib`` calls (the farm is another process).
"""

from __future__ import annotations

import contextlib
import json
import os
import selectors
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

import pytest

from tests.support.procs import die_with_parent

__all__ = [
    "DEFAULT_TOPOLOGY",
    "Farm",
    "FarmError",
    "LOOPBACK_ADDRESSES",
    "READY_LINE",
    "REPO_ROOT",
    "clean_farm",
    "farm",
    "free_port",
]

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_TOPOLOGY = REPO_ROOT / "conf" / "topology.toml"
READY_LINE = "backend-stub ready"
LOOPBACK_ADDRESSES = ("127.0.0.1", "127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5")


class FarmError(RuntimeError):
    """The farm did not start, or a control API call failed.

    ``status`` is the HTTP status of a failed control call (None otherwise).
    """

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


def free_port(addresses: Iterable[str] = LOOPBACK_ADDRESSES, exclude: Iterable[int] = ()) -> int:
    """A TCP port that can be bound on every one of *addresses* right now."""
    excluded = set(exclude)
    wanted = tuple(addresses)
    for _ in range(100):
        with socket.socket() as probe:
            probe.bind((wanted[0], 0))
            port: int = probe.getsockname()[1]
        if port not in excluded and all(_can_bind(a, port) for a in wanted):
            return port
    raise FarmError(f"no TCP port free on all of {', '.join(wanted)}")


def _can_bind(address: str, port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind((address, port))
        except OSError:
            return False
    return True


class Farm:
    """A running ``backend-stub`` process and a client of its control API."""

    def __init__(
        self,
        process: subprocess.Popen[bytes],
        port: int,
        control_port: int,
        log: IO[bytes],
    ) -> None:
        self.process = process
        self.port = port
        self.control_port = control_port
        self._log = log
        self._final_log: str | None = None
        self._addresses: dict[str, str] = {}

    @classmethod
    def start(cls, topology_path: str, port: int, control_port: int, timeout: float = 15.0) -> Farm:
        """Launch the farm and wait (at most *timeout* s) until it is ready."""
        log = tempfile.TemporaryFile(prefix="backend-stub-", suffix=".log")
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "backend_stub",
                "--topology",
                str(topology_path),
                "--port",
                str(port),
                "--control",
                f"127.0.0.1:{control_port}",
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=log,
            cwd=REPO_ROOT,
            start_new_session=True,
            preexec_fn=die_with_parent(),
        )
        farm = cls(process, port, control_port, log)
        try:
            farm._wait_ready(timeout)
            farm._addresses = {s["name"]: s["address"] for s in farm.servers()}
        except BaseException:
            farm.stop()
            raise
        return farm

    def _wait_ready(self, timeout: float) -> None:
        assert self.process.stdout is not None
        deadline = time.monotonic() + timeout
        buffered = b""
        with selectors.DefaultSelector() as selector:
            selector.register(self.process.stdout, selectors.EVENT_READ)
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise FarmError(f"farm not ready after {timeout} s{self._tail()}")
                if not selector.select(left):
                    continue
                chunk = os.read(self.process.stdout.fileno(), 4096)
                if not chunk:
                    self.process.wait(timeout=5)
                    raise FarmError(
                        f"farm exited with status {self.process.returncode}{self._tail()}"
                    )
                buffered += chunk
                if READY_LINE.encode() in buffered.splitlines():
                    return

    def _tail(self) -> str:
        text = self.log_text().strip()
        return f": {text.splitlines()[-1]}" if text else ""

    @property
    def pid(self) -> int:
        """The process id of the farm."""
        return self.process.pid

    @property
    def control_url(self) -> str:
        """Base URL of the control API."""
        return f"http://127.0.0.1:{self.control_port}"

    def address_of(self, name: str) -> str:
        """The loopback address of the server called *name*."""
        return self._addresses[name]

    def url(self, name: str, path: str = "/") -> str:
        """``http://<address of name>:<port><path>``."""
        return f"http://{self.address_of(name)}:{self.port}{path}"

    def log_text(self) -> str:
        """Everything the farm wrote to stderr so far (its request log)."""
        if self._final_log is not None:
            return self._final_log
        self._log.seek(0)
        return self._log.read().decode("utf-8", "replace")

    def servers(self) -> list[dict[str, Any]]:
        """``GET /servers``: name, address, port and fault of every server."""
        result: list[dict[str, Any]] = self._call("GET", "/servers")
        return result

    def requests(self, server: str | None = None) -> list[dict[str, Any]]:
        """``GET /requests``: the records (of one server), oldest first."""
        path = "/requests"
        if server is not None:
            path += "?" + urllib.parse.urlencode({"server": server})
        result: list[dict[str, Any]] = self._call("GET", path)
        return result

    def clear(self) -> None:
        """``DELETE /requests``: forget all records."""
        self._call("DELETE", "/requests")

    def set_fault(self, server: str, mode: str, **params: Any) -> dict[str, Any]:
        """``PUT /faults/<server>``; returns once the fault is in force."""
        body = {"mode": mode, **params}
        path = "/faults/" + urllib.parse.quote(server, safe="")
        result: dict[str, Any] = self._call("PUT", path, body)
        return result

    def reset(self) -> None:
        """Clear the records and put every server back to fault ``none``."""
        self.clear()
        for server in self.servers():
            if server["fault"]["mode"] != "none":
                self.set_fault(server["name"], "none")

    def _call(self, method: str, path: str, body: object = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.control_url + path, data, method=method)
        if data is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return json.load(response)
        except urllib.error.HTTPError as exc:
            with exc:
                detail = exc.read().decode("utf-8", "replace")
            raise FarmError(f"{method} {path}: {exc.code} {detail}", status=exc.code) from None

    def stop(self, timeout: float = 10.0) -> int:
        """SIGTERM the farm, wait (SIGKILL after *timeout* s); the exit status."""
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()
        if self._final_log is None:
            self._final_log = self.log_text()
            self._log.close()
        return self.process.returncode

    def __enter__(self) -> Farm:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


@pytest.fixture(scope="session")
def farm() -> Iterator[Farm]:
    """The stub farm of conf/topology.toml on free ports, for the session."""
    port = free_port(LOOPBACK_ADDRESSES[1:])
    control_port = free_port(LOOPBACK_ADDRESSES[:1], exclude={port})
    running = Farm.start(str(DEFAULT_TOPOLOGY), port, control_port)
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
def clean_farm(farm: Farm) -> Iterator[Farm]:
    """The session farm with no records and no faults; faults are lifted again
    after the test, so tests using the plain ``farm`` never inherit one."""
    farm.reset()
    yield farm
    farm.reset()
