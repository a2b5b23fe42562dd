"""Clients that stop reading: cut after send_timeout, with their back-end
connections, and the memory they held given back (a real `feproxy serve`)."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from frontend.loadtest.procs import memory_kib
from tests.support.configs import static_config
from tests.support.farm import Farm, free_port
from tests.support.serve import ServeProcess, established_to

READERS = 500
SEND_TIMEOUT = 2.0


def _wait(condition: Callable[[], bool], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return False


@pytest.mark.slow
@pytest.mark.usefixtures("clean_farm")
def test_slow_readers_lose_their_connections_and_the_memory_comes_back(
    farm: Farm, tmp_path: Path
) -> None:
    """500 clients ask for 16 MiB each and read nothing: after send_timeout the
    front end closes them and their back-end connections, and its RSS comes
    back to within 16 MiB of what it was before them (the heap is trimmed
    within 5 s of a crowd leaving: frontend.ops.memory)."""
    port = free_port()
    config = static_config(
        tmp_path / "fe.toml", port, farm, send_timeout=SEND_TIMEOUT, response_timeout=30.0
    )
    with ServeProcess.start(config, ("127.0.0.1", port)) as fe:
        warm = socket.create_connection(("127.0.0.1", port))
        warm.sendall(b"GET /exchweb/bytes/1000 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        while warm.recv(65536):
            pass
        warm.close()
        before = memory_kib(fe.pid)
        clients = []
        for _ in range(READERS):
            s = socket.socket()
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            s.connect(("127.0.0.1", port))
            s.sendall(b"GET /exchweb/bytes/16777216 HTTP/1.1\r\nHost: x\r\n\r\n")
            clients.append(s)
        try:
            assert _wait(lambda: established_to(fe.pid, port, local=True) >= READERS, 20)
            assert _wait(lambda: established_to(fe.pid, port, local=True) == 0, 30), (
                "slow readers were not cut"
            )
            assert _wait(lambda: established_to(fe.pid, farm.port) == 0, 10), (
                "their back-end connections stayed open"
            )
            peak = memory_kib(fe.pid, "VmHWM")
            returned = _wait(lambda: memory_kib(fe.pid) - before < 16 * 1024, 15)
            after = memory_kib(fe.pid)
        finally:
            for s in clients:
                s.close()
        assert peak - before > 16 * 1024, "the slow readers held little: the test proves nothing"
        assert returned, (
            f"RSS {before // 1024} MiB before, peak {peak // 1024} MiB, {after // 1024} MiB after"
        )
        assert "read nothing for 2.0s" in fe.errors()
