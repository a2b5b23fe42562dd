"""Run the stub back-end farm (``python -m backend_stub``) for tests.

Register with ``pytest_plugins = ["tests.support.farm"]`` to get the fixtures:

- ``farm`` (session): the farm of ``conf/topology.toml`` on free ports.
- ``clean_farm`` (function): the same farm with its records cleared, every
  server's fault reset to ``none`` and its expect mode to the topology's
  before the test.

The :class:`Farm` object talks to the farm's control API with blocking
``urllib`` calls (the farm is another process).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest

from frontend.loadtest import procs
from frontend.loadtest.procs import Child, ChildError

__all__ = [
    "DEFAULT_TOPOLOGY",
    "LOOPBACK_ADDRESSES",
    "READY_LINE",
    "REPO_ROOT",
    "Farm",
    "FarmError",
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
    try:
        return procs.free_port(addresses, exclude)
    except ChildError as error:
        raise FarmError(str(error)) from None


class Farm:
    """A running ``backend-stub`` process and a client of its control API.

    Its output goes to a temporary directory, removed when it stops.
    """

    def __init__(self, child: Child, port: int, control_port: int) -> None:
        self.child = child
        self.port = port
        self.control_port = control_port
        self._final_log: str | None = None
        self._addresses: dict[str, str] = {}
        self._expect_modes: dict[str, str] = {}  # as in the topology

    @classmethod
    def start(cls, topology_path: str, port: int, control_port: int, timeout: float = 15.0) -> Farm:
        """Launch the farm and wait (at most *timeout* s) until it is ready."""
        workdir = Path(tempfile.mkdtemp(prefix="backend-stub-"))
        argv = [sys.executable, "-m", "backend_stub", "--topology", str(topology_path)]
        argv += ["--port", str(port), "--control", f"127.0.0.1:{control_port}"]
        try:
            child = Child("farm", argv, workdir, REPO_ROOT)
        except BaseException:
            shutil.rmtree(workdir, ignore_errors=True)
            raise
        farm = cls(child, port, control_port)
        try:
            farm._wait_ready(timeout)
            servers = farm.servers()
            farm._addresses = {s["name"]: s["address"] for s in servers}
            farm._expect_modes = {s["name"]: s["expect"] for s in servers}
        except BaseException:
            farm.stop()
            raise
        return farm

    def _wait_ready(self, timeout: float) -> None:
        try:
            self.child.wait_line(READY_LINE, timeout)
        except ChildError as error:
            raise FarmError(f"{error}{self._tail()}") from None

    def _tail(self) -> str:
        text = self.log_text().strip()
        return f": {text.splitlines()[-1]}" if text else ""

    @property
    def process(self) -> subprocess.Popen[bytes]:
        """The farm's process."""
        return self.child.process

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
        return self.child.stderr_path.read_bytes().decode("utf-8", "replace")

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

    def set_fault(self, server: str, mode: str, **params: object) -> dict[str, Any]:
        """``PUT /faults/<server>``; returns once the fault is in force."""
        body = {"mode": mode, **params}
        path = "/faults/" + urllib.parse.quote(server, safe="")
        result: dict[str, Any] = self._call("PUT", path, body)
        return result

    def set_expect(self, server: str, mode: str) -> dict[str, Any]:
        """``PUT /servers/<server>/expect``: answer Expect: 100-continue in *mode*."""
        path = "/servers/" + urllib.parse.quote(server, safe="") + "/expect"
        result: dict[str, Any] = self._call("PUT", path, {"mode": mode})
        return result

    def reset(self) -> None:
        """Clear the records, put every server back to fault ``none`` and to
        the expect mode of the topology."""
        self.clear()
        for server in self.servers():
            if server["fault"]["mode"] != "none":
                self.set_fault(server["name"], "none")
            default = self._expect_modes.get(server["name"], "decide")
            if server["expect"] != default:
                self.set_expect(server["name"], default)

    def _call(self, method: str, path: str, body: object = None) -> Any:  # noqa: ANN401 - parsed JSON
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
        status = self.child.stop(timeout)
        if self._final_log is None:
            self._final_log = self.log_text()
            shutil.rmtree(self.child.stdout_path.parent, ignore_errors=True)
        return status

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
