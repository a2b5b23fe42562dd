"""The benchmark (bench/): its parsers in memory, the minimal back end, then one tiny run.

The end-to-end run checks that the harness starts everything, measures every
configuration and prints the ratios and targets; it asserts nothing about
speed (the numbers of a one-second run on a busy machine mean nothing).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.backend import Reply, parse_request_head
from bench.directory import count_ops
from bench.load import LoadResult, merge, parse_result
from bench.profile import hotspots
from frontend.loadtest.procs import free_port, spawn, stop_process, wait_port

ROOT = Path(__file__).resolve().parents[1]

# A response as bench/backends.py captures it from the farm (asked with Connection: close).
CAPTURED = (
    b"HTTP/1.1 200 OK\r\nConnection: close\r\nServer: TwistedWeb/26.10.0\r\n"
    b"X-Backend-Server: ex3.example.com\r\nContent-Length: 6\r\n\r\nhello\n"
)
PERSISTENT = (
    b"HTTP/1.1 200 OK\r\nServer: TwistedWeb/26.10.0\r\n"
    b"X-Backend-Server: ex3.example.com\r\nContent-Length: 6\r\n\r\nhello\n"
)
CLOSING = PERSISTENT.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n")

SLAPD_LOG = b"""\
6b01 0x7f conn=1001 op=18 SRCH base="dc=example,dc=com" scope=2 deref=3 filter="(&(x=y))"
6b01 0x7f conn=1001 op=18 SRCH attr=sAMAccountName userPrincipalName
6b01 0x7f conn=1007 op=0 BIND dn="cn=bench0006,cn=Users,dc=example,dc=com" method=128
6b01 0x7f conn=1007 op=0 BIND dn="cn=bench0006,cn=Users,dc=example,dc=com" mech=SIMPLE ssf=0
6b01 0x7f conn=1007 op=1 SRCH base="" scope=0 deref=3 filter="(objectClass=*)"
6b01 0x7f conn=1007 op=2 SRCH base="cn=Subschema" scope=0 deref=3 filter="(objectClass=subschema)"
6b01 0x7f conn=1007 op=3 UNBIND
6b01 0x7f conn=1001 op=19 SRCH base="cn=Configuration,dc=example,dc=com" scope=2 deref=3 \
filter="(objectClass=*)"
6b01 0x7f conn=1007 op=3 RESULT tag=97 err=0 text=
"""


def test_count_ops_counts_each_operation_once_and_sets_watcher_polls_apart() -> None:
    """slapd's two-line operations count once; watcher polls and schema reads are told apart."""
    ops = count_ops(SLAPD_LOG)
    assert ops.by_kind == {"SRCH": 3, "BIND": 1, "UNBIND": 1}
    assert ops.per_request_ops == 4
    assert ops.schema_reads == 2
    assert ops.background == 1


def test_parse_result_and_merge_add_up_rounds() -> None:
    """A BENCHJSON line parses; merged rounds add counts and keep each round's rate."""
    line = (
        'BENCHJSON {"requests":100,"duration_us":1000000,"bytes":5000,'
        '"errors":{"connect":0,"read":1,"write":0,"status":2,"timeout":0},'
        '"p50_us":1000,"p90_us":2000,"p99_us":3000,"mean_us":1200.5,"max_us":9000}'
    )
    one = parse_result("Running 1s test\n" + line + "\n", "wrk")
    assert (one.requests, one.rps, one.p99_ms, one.failed) == (100, 100.0, 3.0, 3)
    two: LoadResult = merge([one, one])
    assert (two.requests, two.seconds, two.p50_ms) == (200, 2.0, 1.0)
    assert two.rounds_rps == (100.0, 100.0)


def test_hotspots_rank_self_and_front_end_inclusive_time() -> None:
    """py-spy raw stacks give self time per line and inclusive time of frontend/ code."""
    raw = (
        'process 1:"python";main (frontend/cli.py:46);render (frontend/proxy.py:131);'
        "send (twisted/internet/tcp.py:300) 3\n"
        'process 1:"python";main (frontend/cli.py:46);render (frontend/proxy.py:131) 1\n'
    )
    by_self, by_total, samples = hotspots(raw, ROOT)
    assert samples == 4
    assert (by_self[0].location, by_self[0].self_share) == ("twisted/internet/tcp.py:300", 0.75)
    assert [(h.location, h.total_share) for h in by_total] == [("frontend/proxy.py:131", 1.0)]


def test_reply_sets_the_connection_header_per_kind_of_request() -> None:
    """The captured Connection header goes; keep-alive and close variants get their own."""
    reply = Reply.parse(CAPTURED)
    assert reply.persistent == PERSISTENT
    assert reply.close == CLOSING
    assert reply.keep_alive == CLOSING.replace(b"close", b"keep-alive")
    with pytest.raises(ValueError, match="Content-Length"):
        Reply.parse(CAPTURED.replace(b"Content-Length: 6", b"Content-Length: 7"))


def test_parse_request_head_keeps_http11_and_http10_keep_alive_only() -> None:
    """(keep, HTTP/1.1, body length) per request head; what cannot be framed is not kept."""
    assert parse_request_head(b"GET / HTTP/1.1\r\nHost: x") == (True, True, 0)
    assert parse_request_head(b"POST / HTTP/1.1\r\ncontent-length: 12") == (True, True, 12)
    assert parse_request_head(b"GET / HTTP/1.1\r\nConnection: Close") == (False, True, 0)
    assert parse_request_head(b"GET / HTTP/1.0") == (False, False, 0)
    assert parse_request_head(b"GET / HTTP/1.0\r\nConnection: Keep-Alive") == (True, False, 0)
    assert parse_request_head(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked")[0] is False
    assert parse_request_head(b"POST / HTTP/1.1\r\nContent-Length: x")[0] is False


@pytest.fixture
def replay_server(tmp_path: Path) -> Iterator[int]:
    """bench/backend.py replaying CAPTURED on 127.0.0.1: its port."""
    replay = tmp_path / "reply.http"
    replay.write_bytes(CAPTURED)
    port = free_port()
    argv = [sys.executable, str(ROOT / "bench" / "backend.py"), "--listen", f"127.0.0.1:{port}"]
    with (tmp_path / "backend.log").open("wb") as log:
        process = spawn([*argv, "--replay", str(replay)], stdout=log, stderr=log, cwd=ROOT)
    try:
        wait_port("127.0.0.1", port, 30, lambda: process.poll() is None)
        yield port
    finally:
        stop_process(process)


def _read_exactly(conn: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size and (chunk := conn.recv(size - len(data))):
        data += chunk
    return data


def _read_to_end(conn: socket.socket) -> bytes:
    data = b""
    while chunk := conn.recv(65536):
        data += chunk
    return data


def test_backend_answers_pipelined_keep_alive_requests_on_one_connection(
    replay_server: int,
) -> None:
    """Two pipelined requests (one with a body) get the replayed bytes; the connection stays."""
    with socket.create_connection(("127.0.0.1", replay_server), timeout=10) as conn:
        conn.sendall(
            b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\nbody"
            b"GET /b HTTP/1.1\r\nHost: x\r\n\r\n"
        )
        assert _read_exactly(conn, 2 * len(PERSISTENT)) == 2 * PERSISTENT
        conn.sendall(b"GET /c HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r")
        time.sleep(0.05)  # a head split over two reads
        conn.sendall(b"\n")
        assert _read_to_end(conn) == CLOSING


def test_backend_answers_http10_and_closes(replay_server: int) -> None:
    """HTTP/1.0 without keep-alive (as ReverseProxyResource asks): one answer, then EOF."""
    with socket.create_connection(("127.0.0.1", replay_server), timeout=10) as conn:
        conn.sendall(b"GET /apps/Projects/ HTTP/1.0\r\nHost: x\r\n\r\n")
        assert _read_to_end(conn) == CLOSING


@pytest.mark.slow
def test_quick_run_measures_every_configuration_and_prints_ratios(tmp_path: Path) -> None:
    """``python -m bench.harness --quick`` runs end to end and prints ratios and targets."""
    out = tmp_path / "bench.json"
    env = {**os.environ, "PATH": "/usr/sbin:" + os.environ.get("PATH", "")}
    done = subprocess.run(
        [sys.executable, "-m", "bench.harness", "--quick", "--json", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    for text in (
        "GET /apps/Projects/ against a minimal back end",
        "GET /apps/Projects/ against the stub farm",
        "bench backend",
        "full/ReverseProxyResource",
        "GB/s",
        "LDAP operations",
    ):
        assert text in done.stdout
    # --quick loads each proxy once per back end: the many-users target and INFO line only.
    assert done.stdout.count("PASS ") + done.stdout.count("FAIL ") == 4
    assert done.stdout.count("INFO ") == 1
    data = json.loads(out.read_text())
    small = {"reverse_proxy", "full_many_users"}
    assert set(data["small"]) == set(data["small_minimal"]) == small
    for result in [*data["small"].values(), *data["small_minimal"].values(), *data["big"].values()]:
        assert result["requests"] > 0
        assert result["rps"] > 0
        assert result["errors"]["status"] == 0
    assert "minimal back end" in data["targets"][0]["name"]
    assert set(data["cpu_us_per_request"]["small_minimal"]["full_many_users"]) >= {
        "feproxy_min",
        "bench_backend",
    }
    assert data["ldap"]["new_user"]["public"]["status"] == [200, 200]
