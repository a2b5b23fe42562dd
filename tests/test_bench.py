"""The benchmark (bench/): its parsers in memory, then one tiny run end to end.

The end-to-end run checks that the harness starts everything, measures every
configuration and prints the ratios and targets; it asserts nothing about
speed (the numbers of a one-second run on a busy machine mean nothing).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.directory import count_ops
from bench.load import LoadResult, merge, parse_result
from bench.profile import hotspots

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
    for text in ("full/ReverseProxyResource", "full/direct", "GB/s", "LDAP operations"):
        assert text in done.stdout
    assert done.stdout.count("PASS ") + done.stdout.count("FAIL ") == 5
    data = json.loads(out.read_text())
    assert set(data["small"]) == {"direct", "reverse_proxy", "full_one_user", "full_many_users"}
    for result in [*data["small"].values(), *data["big"].values()]:
        assert result["requests"] > 0
        assert result["errors"]["status"] == 0
    assert data["ldap"]["new_user"]["public"]["status"] == [200, 200]
