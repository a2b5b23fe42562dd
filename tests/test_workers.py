"""`feproxy serve --workers N`: processes sharing sockets, signals reaching all."""

from __future__ import annotations

import os
import signal
import socket
import time
from pathlib import Path

import pytest

from tests.support.configs import static_config
from tests.support.farm import Farm, free_port
from tests.support.serve import ServeProcess, established_to
from tests.test_hostile import exchange

REQUEST = b"GET /exchweb/echo HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"


def children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return sorted(found)


def _both_workers(serve: ServeProcess) -> list[int]:
    """The two workers' pids, once both are running."""
    deadline = time.monotonic() + 10
    while len(workers := children(serve.pid)) < 2:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    return workers


@pytest.mark.usefixtures("clean_farm")
def test_workers_share_the_socket_take_signals_and_are_restarted(
    farm: Farm, tmp_path: Path
) -> None:
    """Connections spread over both workers, SIGHUP reloads both, a killed worker
    is replaced, SIGTERM ends all."""
    port = free_port()
    config = static_config(tmp_path / "fe.toml", port, farm)
    with ServeProcess.start(config, ("127.0.0.1", port), "--workers", "2") as serve:
        workers = _both_workers(serve)
        time.sleep(0.5)
        clients = [socket.create_connection(("127.0.0.1", port)) for _ in range(40)]
        try:
            for c in clients:
                c.sendall(b"GET /exchweb/echo HTTP/1.1\r\nHost: x\r\n\r\n")
                assert c.recv(65536).startswith(b"HTTP/1.1 200")
            per_worker = [established_to(w, port, local=True) for w in workers]
            assert sum(per_worker) == 40
            assert min(per_worker) > 0, per_worker  # the kernel spreads connections
        finally:
            for c in clients:
                c.close()
        serve.signal(signal.SIGHUP)
        deadline = time.monotonic() + 5
        while serve.errors().count("configuration reloaded") < 2:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        os.kill(workers[0], signal.SIGKILL)
        deadline = time.monotonic() + 10
        while (now := children(serve.pid)) == workers or len(now) < 2:
            assert time.monotonic() < deadline, "the killed worker was not replaced"
            time.sleep(0.05)
        time.sleep(0.5)
        assert exchange(port, REQUEST).startswith(b"HTTP/1.1 200")
        assert serve.stop() == 0
        assert all(not Path(f"/proc/{pid}").exists() for pid in now)


@pytest.mark.usefixtures("clean_farm")
def test_sigterm_reaching_a_worker_still_starting_stops_it_cleanly(
    farm: Farm, tmp_path: Path
) -> None:
    """A SIGTERM relayed to a worker that has just been started (its imports not
    done, its handlers not installed) waits for it: the master exits 0."""
    port = free_port()
    config = static_config(tmp_path / "fe.toml", port, farm)
    with ServeProcess.start(config, ("127.0.0.1", port), "--workers", "2") as serve:
        workers = _both_workers(serve)
        os.kill(workers[0], signal.SIGKILL)
        deadline = time.monotonic() + 10
        while (now := children(serve.pid)) == workers or len(now) < 2:
            assert time.monotonic() < deadline, "the killed worker was not replaced"
            time.sleep(0.01)
        serve.signal(signal.SIGTERM)  # at once: the new worker is still starting
        assert serve.stop() == 0, serve.errors()
        assert all(not Path(f"/proc/{pid}").exists() for pid in now)


def _terminate_repeatedly(serve: ServeProcess) -> int:
    """SIGTERM ``serve`` every few milliseconds until it exits; its status."""
    deadline = time.monotonic() + 20
    while serve.proc.poll() is None:
        assert time.monotonic() < deadline, "still running after 20 s of SIGTERMs"
        try:
            serve.signal(signal.SIGTERM)
        except ProcessLookupError:
            break
        time.sleep(0.002)
    return serve.proc.wait(10)


@pytest.mark.usefixtures("clean_farm")
@pytest.mark.parametrize("workers", [1, 2], ids=["one-process", "two-workers"])
def test_sigterms_repeated_while_stopping_still_end_in_a_clean_exit(
    farm: Farm, tmp_path: Path, workers: int
) -> None:
    """SIGTERM after SIGTERM (a relay on top of systemd's own, an impatient
    operator) stops the process once: exit 0, the workers' included."""
    port = free_port()
    config = static_config(tmp_path / "fe.toml", port, farm)
    with ServeProcess.start(config, ("127.0.0.1", port), "--workers", str(workers)) as serve:
        if workers > 1:
            pids = _both_workers(serve)
        assert exchange(port, REQUEST).startswith(b"HTTP/1.1 200")
        assert _terminate_repeatedly(serve) == 0, serve.errors()
        assert serve.errors().count("received SIGTERM: stopping") == workers, serve.errors()
        if workers > 1:
            assert all(not Path(f"/proc/{pid}").exists() for pid in pids)
