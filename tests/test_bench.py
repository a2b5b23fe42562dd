"""The benchmark (bench/): its parsers and targets in memory, its servers and burst client
for real, then one tiny run.

The end-to-end run checks that the harness starts everything, measures every
configuration and prints the ratios and targets; it asserts nothing about
speed (the numbers of a one-second run on a busy machine mean nothing).
HAProxy, nginx and wrk are installed by scripts/install-bench-tools when
missing (the ``bench_tools`` fixture): these tests never skip for them.
"""

from __future__ import annotations

import http.client
import json
import math
import os
import shutil
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pytest

from bench import peers
from bench.burst import burst
from bench.bursts import BurstResult, as_round, merge_bursts, parse_burst, percentile
from bench.directory import count_ops
from bench.kernel import listen_backlog, parse_netstat
from bench.load import LoadResult, merge, parse_result
from bench.options import Options, Results
from bench.profile import hotspots
from bench.targets import targets
from frontend.loadtest.procs import free_port, spawn, stop_process, wait_port

ROOT = Path(__file__).resolve().parents[1]

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


NETSTAT = """\
TcpExt: SyncookiesSent SyncookiesRecv ListenOverflows ListenDrops TCPTimeouts
TcpExt: 0 0 12 15 3
IpExt: InNoRoutes InTruncatedPkts
IpExt: 0 0
"""


def test_parse_netstat_reads_the_tcpext_counters() -> None:
    """/proc/net/netstat's TcpExt line of names pairs with its line of values."""
    counters = parse_netstat(NETSTAT)
    assert counters["ListenOverflows"] == 12
    assert counters["ListenDrops"] == 15
    assert "InNoRoutes" not in counters


def test_percentile_takes_the_nearest_rank() -> None:
    """p50 and p99 of 1..100 are 50 and 99; of one value, that value; of none, 0."""
    values = [float(x) for x in range(1, 101)]
    assert (percentile(values, 50), percentile(values, 99), percentile(values, 100)) == (
        50.0,
        99.0,
        100.0,
    )
    assert percentile([7.0], 99) == 7.0
    assert percentile([], 50) == 0.0


def _burst(latencies: list[float], timeouts: int = 0, overflows: int = 0) -> BurstResult:
    errors = {"connect": 0, "read": 0, "status": 0, "timeout": timeouts}
    one = BurstResult(
        connections=len(latencies) + timeouts,
        latencies_ms=sorted(latencies),
        errors=errors,
        wall_s=1.0,
        client_cpu_s=0.5,
        listen={"ListenOverflows": overflows, "ListenDrops": overflows},
    )
    return as_round(one)


def test_burst_percentiles_count_failed_connections_as_slowest() -> None:
    """With 2 of 100 connections timed out, p99 is a failure, p50 an answered latency."""
    result = _burst([10.0] * 98, timeouts=2)
    assert result.p50_ms == 10.0
    assert math.isinf(result.p99_ms)
    assert result.max_answered_ms == 10.0
    assert result.to_json()["p99_ms"] is None


def test_merge_bursts_adds_counters_and_takes_the_median_of_the_rounds_percentiles() -> None:
    """Merged rounds: errors and drop counters added; one disturbed round does not set p99."""
    rounds = [_burst([1.0, 3.0], overflows=4), _burst([2.0], timeouts=1), _burst([4.0])]
    merged = merge_bursts(rounds)
    assert merged.latencies_ms == [1.0, 2.0, 3.0, 4.0]
    assert (merged.connections, merged.failed) == (5, 1)
    assert merged.listen == {"ListenOverflows": 4, "ListenDrops": 4}
    assert merged.rounds_p99_ms == (3.0, math.inf, 4.0)
    assert merged.p99_ms == 4.0
    assert merged.max_answered_ms == 4.0


def test_parse_burst_reads_the_client_summary_line() -> None:
    """bench/burst.py's BURSTJSON line becomes a result with the listen counters given."""
    line = (
        'BURSTJSON {"connections": 3, "latencies_ms": [5.0, 1.0], "errors": {"connect": 1,'
        ' "read": 0, "status": 0, "timeout": 0}, "wall_s": 0.2, "client_cpu_s": 0.1}'
    )
    result = parse_burst("noise\n" + line + "\n", {"ListenDrops": 2})
    assert result.latencies_ms == [1.0, 5.0]
    assert result.failed == 1
    assert result.listen == {"ListenDrops": 2}
    assert math.isinf(result.rounds_p99_ms[0])  # 1 of 3 failed: over 1%
    with pytest.raises(RuntimeError, match="no summary"):
        parse_burst("Traceback ...")


def _load(rps: float, p50: float = 1.0, p99: float = 2.0) -> LoadResult:
    return LoadResult(
        requests=round(rps * 10),
        seconds=10.0,
        bytes=0,
        errors={"status": 0},
        p50_ms=p50,
        p90_ms=p50,
        p99_ms=p99,
        mean_ms=p50,
        max_ms=p99,
        tool="wrk",
    )


def _verdicts(results: Results) -> dict[str, bool]:
    return {t.name.split(":")[0]: t.met for t in targets(results)}


def test_targets_judge_the_ratios_of_issue_11() -> None:
    """Each issue-11 target passes at its threshold and fails just under it."""
    results = Results(Options(users=100, burst=3000))
    results.small = {
        "reverse_proxy": _load(1000),
        "haproxy": _load(16000),
        "full_one_user": _load(4000, p50=1.0, p99=3.0),
        "full_many_users": _load(3990, p50=1.0, p99=3.1),
    }
    results.big = {"haproxy": _load(1000), "full": _load(900)}
    results.memory = {"growth_mib": 49.0}
    results.burst = {"haproxy": _burst([100.0] * 100), "full": _burst([300.0] * 100)}
    assert _verdicts(results) == {
        "1 KiB, full path (1 user) >= 4.0x ReverseProxyResource req/s": True,
        "1 KiB, full path (100 users) >= 4.0x ReverseProxyResource req/s": False,
        "1 KiB, full path (1 user) >= 0.25x HAProxy req/s": True,
        "1 KiB, full path (100 users) >= 0.25x HAProxy req/s": False,
        "1 MiB >= 0.9x HAProxy GB/s": True,
        "1 MiB": True,  # RSS growth < 50 MiB
        "1 KiB, full path (1 user)": True,  # p99 <= 3x p50
        "1 KiB, full path (100 users)": False,
        "burst of 3000 new connections": True,  # feproxy p99 <= 3x HAProxy's
    }
    results.burst["full"] = _burst([300.0] * 98, timeouts=2)
    results.memory = {"growth_mib": 50.0}
    verdicts = _verdicts(results)
    assert verdicts["burst of 3000 new connections"] is False
    assert verdicts["1 MiB"] is False


@pytest.fixture(scope="session")
def bench_tools() -> None:
    """wrk, haproxy and nginx, installed by scripts/install-bench-tools when missing."""
    done = subprocess.run(
        [str(ROOT / "scripts" / "install-bench-tools")],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    for tool in ("wrk", "haproxy", "nginx"):
        assert shutil.which(tool, path=SEARCH_PATH), f"{tool} missing after install"


SEARCH_PATH = "/usr/sbin:/usr/bin:/sbin:/bin:" + os.environ.get("PATH", "")


@pytest.mark.usefixtures("bench_tools")
def test_generated_configurations_pass_haproxy_and_nginx_checks(tmp_path: Path) -> None:
    """haproxy -c and nginx -t accept the origin's and both proxies' configurations."""
    checks = [
        [*server.argv, "-t", "-q"]
        for server in (
            peers.origin(tmp_path / "origin", 8001, nofile=20000),
            peers.nginx_proxy(tmp_path / "nginx", 8002, 8001, nofile=20000),
        )
    ]
    haproxy = peers.haproxy(tmp_path / "haproxy", 8003, 8001, nofile=20000)
    checks.append([haproxy.argv[0], "-c", "-q", "-f", str(haproxy.config)])
    for argv in checks:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
        assert done.returncode == 0, f"{argv}: {done.stdout}{done.stderr}"
    config = haproxy.config.read_text()
    for setting in ("nbthread 1", "http-reuse always", "option http-keep-alive", "mode http"):
        assert setting in config
    nginx = (tmp_path / "nginx" / "nginx.conf").read_text()
    for setting in ("worker_processes 1;", "keepalive 64;", 'proxy_set_header Connection "";'):
        assert setting in nginx


def test_haproxy_maxconn_fits_the_open_files_limit() -> None:
    """10,000 when descriptors allow it, else what two descriptors per connection leave."""
    assert peers.haproxy_maxconn(65536) == 10000
    assert peers.haproxy_maxconn(20000) == 9950


@pytest.fixture
def proxies(
    bench_tools: None,  # noqa: ARG001 - a fixture asked for its effect: the tools are installed
    tmp_path: Path,
) -> Iterator[dict[str, int]]:
    """The nginx origin with HAProxy and nginx in front of it: their ports by name."""
    ports: list[int] = []
    for _ in range(3):
        ports.append(free_port(exclude=ports))
    servers = [
        peers.origin(tmp_path / "origin", ports[0], nofile=4096),
        peers.haproxy(tmp_path / "haproxy", ports[1], ports[0], nofile=4096),
        peers.nginx_proxy(tmp_path / "nginx", ports[2], ports[0], nofile=4096),
    ]
    started = []
    try:
        for server in servers:
            with (tmp_path / f"{server.name}.log").open("wb") as log:
                process = spawn(server.argv, stdout=log, stderr=log, cwd=tmp_path)
            started.append(process)
            wait_port("127.0.0.1", server.port, 30, partial(_running, process))
        yield {server.name: server.port for server in servers}
    finally:
        for process in reversed(started):
            stop_process(process)


def _running(process: subprocess.Popen[bytes]) -> bool:
    return process.poll() is None


def _get_size(port: int, path: str) -> tuple[int, int]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("GET", path, headers={"Authorization": "Basic YTpi"})
        response = conn.getresponse()
        return response.status, len(response.read())
    finally:
        conn.close()


def test_origin_serves_1k_for_any_path_and_1m_for_1m_bin_through_each_proxy(
    proxies: dict[str, int],
) -> None:
    """Whatever path a proxy forwards, the origin answers 1 KiB; *1m.bin paths get 1 MiB."""
    for port in proxies.values():
        assert _get_size(port, "/apps/Projects/") == (200, 1024)
        assert _get_size(port, "/exchange/alice/") == (200, 1024)
        assert _get_size(port, "/apps/Projects/1m.bin") == (200, 1024 * 1024)


def test_burst_client_times_every_connection_of_a_burst(proxies: dict[str, int]) -> None:
    """200 connections at once through HAProxy: 200 latencies, no failure."""
    url = f"http://127.0.0.1:{proxies['haproxy']}/apps/Projects/"
    result = burst(url, ["Basic YTpi"], 200, 30.0)
    latencies = result["latencies_ms"]
    assert isinstance(latencies, list)
    assert len(latencies) == 200
    assert all(x > 0 for x in latencies)
    assert result["errors"] == {"connect": 0, "read": 0, "status": 0, "timeout": 0}


def test_burst_client_counts_refused_connections() -> None:
    """Nothing listening: every connection is a connect failure, no latency."""
    port = free_port()
    result = burst(f"http://127.0.0.1:{port}/", [], 20, 5.0)
    assert result["latencies_ms"] == []
    assert result["errors"] == {"connect": 20, "read": 0, "status": 0, "timeout": 0}


def test_burst_client_tells_error_statuses_broken_responses_and_timeouts_apart() -> None:
    """A 503 counts as status, a close before the body's end as read, silence as timeout."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(10)
        port = listener.getsockname()[1]
        answers = [
            b"HTTP/1.1 503 Busy\r\nContent-Length: 0\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort",
            None,  # never answered
        ]
        held: list[socket.socket] = []

        def serve() -> None:
            for answer in answers:
                conn, _ = listener.accept()
                conn.recv(4096)
                if answer is None:
                    held.append(conn)
                    continue
                conn.sendall(answer)
                conn.close()

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        result = burst(f"http://127.0.0.1:{port}/", [], 3, 1.0)
        thread.join(10)
        for conn in held:
            conn.close()
    assert result["errors"] == {"connect": 0, "read": 1, "status": 1, "timeout": 1}


@pytest.mark.usefixtures("bench_tools")
def test_listen_backlog_is_read_from_the_kernel() -> None:
    """A socket listening with a backlog of 37 shows 37 (ss's Send-Q)."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(37)
        assert listen_backlog(listener.getsockname()[1]) == 37


@pytest.mark.slow
@pytest.mark.usefixtures("bench_tools")
def test_quick_run_measures_every_group_and_prints_ratios_and_targets(tmp_path: Path) -> None:
    """``python -m bench.harness --quick`` runs end to end and prints ratios and targets."""
    out = tmp_path / "bench.json"
    env = {**os.environ, "PATH": SEARCH_PATH}
    done = subprocess.run(
        [sys.executable, "-m", "bench.harness", "--quick", "--json", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    for text in (
        "peers: haproxy ",
        "net.core.somaxconn ",
        "1 KiB responses",
        "x HAProxy",
        "x ReverseProxyResource",
        "x nginx",
        "p99/p50",
        "GB/s",
        "feproxy RSS:",
        "Burst: 50 new connections",
        "ListenOverflows",
        "LDAP operations",
    ):
        assert text in done.stdout
    # --quick judges the many-users ratios, 1 MiB against HAProxy, RSS, p99/p50 and the burst.
    assert done.stdout.count("PASS ") + done.stdout.count("FAIL ") == 6
    assert done.stdout.count("INFO ") + done.stdout.count("WARN ") == 2
    data = json.loads(out.read_text())
    assert set(data["small"]) == {"reverse_proxy", "haproxy", "nginx", "full_many_users"}
    assert set(data["big"]) == {"haproxy", "full"}
    for result in [*data["small"].values(), *data["big"].values()]:
        assert result["requests"] > 0
        assert result["errors"]["status"] == 0
    assert set(data["burst"]) == {"haproxy", "nginx", "full"}
    for result in data["burst"].values():
        assert result["connections"] == 50
        assert result["answered"] + sum(result["errors"].values()) == 50
        assert set(result["listen"]) == {"ListenOverflows", "ListenDrops"}
    assert set(data["listen_backlogs"]) == {"haproxy", "nginx", "feproxy"}
    assert data["versions"]["haproxy"] != "unknown"
    assert data["versions"]["nginx"] != "unknown"
    assert set(data["cpu_us_per_request"]["small"]["full_many_users"]) >= {"feproxy", "origin"}
    assert data["ldap"]["new_user"]["public"]["status"] == [200, 200]
