"""`feproxy serve` under a stand-in for systemd: the notifications a real process sends
on NOTIFY_SOCKET as it starts, reloads, stops and pings the watchdog."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.configs import write_config
from tests.support.farm import free_port
from tests.support.notify import Message, NotifySocket
from tests.support.serve import ServeProcess
from tests.test_workers import children


def _config(path: Path, port: int) -> Path:
    """A front end on loopback ``port`` (no directory; nothing is requested of it)."""
    return write_config(
        path,
        {
            "frontend": {"listen": [f"tcp:{port}:interface=127.0.0.1"], "authenticate": False},
            "hosts": {"ex1.example.com": "127.0.0.2"},
            "vdirs": [{"path": "/exchweb", "kind": "static", "servers": ["ex1.example.com"]}],
        },
    )


@pytest.fixture
def sd(tmp_path: Path) -> Iterator[NotifySocket]:
    """The notification socket, bound in tmp_path."""
    with NotifySocket(tmp_path / "notify") as s:
        yield s


def _start(
    tmp_path: Path, sd: NotifySocket, *extra: str, **environ: str
) -> tuple[ServeProcess, Path]:
    config = _config(tmp_path / "fe.toml", free_port())
    env = {"NOTIFY_SOCKET": str(sd.path), **environ}
    return ServeProcess.start(config, None, *extra, env=env), config


def _reload(serve: ServeProcess, sd: NotifySocket) -> tuple[Message, Message]:
    """SIGHUP: the RELOADING=1 and READY=1 that follow (the clock checked between)."""
    before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    serve.signal(signal.SIGHUP)
    reloading = sd.next()
    after = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    assert "RELOADING=1" in reloading, reloading
    assert before <= int(reloading.fields["MONOTONIC_USEC"]) <= after
    return reloading, sd.next()


def test_serve_says_ready_reloading_ready_and_stopping_in_order(
    tmp_path: Path, sd: NotifySocket
) -> None:
    """READY=1 with its MAINPID once listening; SIGHUP: RELOADING=1 then READY=1 whose
    STATUS says reloaded, or refused for a broken file; SIGTERM: STOPPING=1; exit 0."""
    serve, config = _start(tmp_path, sd)
    with serve:
        ready = sd.next()
        assert ready.pid == serve.pid
        assert "READY=1" in ready
        assert ready.fields["MAINPID"] == str(serve.pid)
        assert "serving on tcp:" in ready.fields["STATUS"]

        reloading, reloaded = _reload(serve, sd)
        assert "READY=1" in reloaded
        assert reloaded.fields["STATUS"] == f"configuration reloaded from {config}"

        config.write_text("[frontend]\nlisten = 80\n")
        _reloading, refused = _reload(serve, sd)
        assert "READY=1" in refused
        assert refused.fields["STATUS"].startswith("configuration refused, keeping the old one")

        serve.signal(signal.SIGTERM)
        stopping = sd.next()
        assert "STOPPING=1" in stopping
        assert {reloading.pid, reloaded.pid, stopping.pid} == {serve.pid}
        assert serve.proc.wait(20) == 0


def test_with_workers_only_the_master_notifies_once_all_are_serving(
    tmp_path: Path, sd: NotifySocket
) -> None:
    """--workers 2: one READY=1, from the master, once both workers serve; SIGHUP:
    RELOADING=1 then READY=1 once both reloaded; SIGTERM: STOPPING=1; no worker
    ever writes to NOTIFY_SOCKET."""
    serve, _config_path = _start(tmp_path, sd, "--workers", "2")
    with serve:
        ready = sd.next()
        assert (ready.pid, ready.fields["MAINPID"]) == (serve.pid, str(serve.pid))
        assert "READY=1" in ready
        assert ready.fields["STATUS"].endswith("with 2 workers")
        assert serve.errors().count("serving on") == 2  # each worker logged it before
        workers = children(serve.pid)
        assert len(workers) == 2
        for pid in workers:
            environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
            assert not any(v.startswith(b"NOTIFY_SOCKET=") for v in environ)

        _reloading, reloaded = _reload(serve, sd)
        assert "READY=1" in reloaded
        assert reloaded.fields["STATUS"] == "configuration reloaded by 2 workers"
        assert serve.errors().count("configuration reloaded") == 2

        serve.signal(signal.SIGTERM)
        stopping = sd.next()
        assert "STOPPING=1" in stopping
        assert serve.proc.wait(20) == 0
        assert {_reloading.pid, reloaded.pid, stopping.pid} == {serve.pid}
        assert sd.receive(0.2) is None  # nothing more: no second READY, nothing from a worker


def test_serve_pings_the_watchdog_every_half_timeout(tmp_path: Path, sd: NotifySocket) -> None:
    """WATCHDOG_USEC set: WATCHDOG=1 from the process, again and again, after READY."""
    serve, _config_path = _start(tmp_path, sd, WATCHDOG_USEC="200000")
    with serve:
        sd.until(lambda m: "READY=1" in m)
        pings = [sd.until(lambda m: "WATCHDOG=1" in m) for _ in range(4)]
        assert {p.pid for p in pings} == {serve.pid}


def test_a_hung_worker_stops_the_masters_watchdog_pings(tmp_path: Path, sd: NotifySocket) -> None:
    """--workers 2 with a watchdog: the master pings while both workers ping it; a
    worker stopped (SIGSTOP, as a hung reactor) silences the master; SIGCONT
    brings the pings back."""
    serve, _config_path = _start(tmp_path, sd, "--workers", "2", WATCHDOG_USEC="400000")
    with serve:
        sd.until(lambda m: "READY=1" in m)
        assert sd.until(lambda m: "WATCHDOG=1" in m).pid == serve.pid
        worker = children(serve.pid)[0]
        os.kill(worker, signal.SIGSTOP)
        try:
            # Within a generous deadline, a silence of 1.5 s (almost four of the
            # master's intervals) must be seen.
            deadline = time.monotonic() + 20
            while sd.receive(1.5) is not None:
                assert time.monotonic() < deadline, "the master kept pinging"
        finally:
            os.kill(worker, signal.SIGCONT)
        assert sd.until(lambda m: "WATCHDOG=1" in m).pid == serve.pid
