"""Tests for `feproxy loadtest`: statistics, offline simulation, report, CLI, live runs."""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from frontend.loadtest import add_parser, main, run
from frontend.loadtest import stack as stack_module
from frontend.loadtest.ldif import directory_ldif, generate_users
from frontend.loadtest.offline import OfflinePlan, simulate, synthetic_tokens
from frontend.loadtest.report import Movement
from frontend.loadtest.scenario import plan_change, server_names
from frontend.loadtest.stats import (
    chi_square_evenness,
    chi_square_sf,
    percentile,
    regularized_gamma_q,
)
from tests.support.configs import farm_hosts, write_config
from tests.support.farm import Farm
from tests.support.farm import free_port as farm_free_port
from tests.support.serve import ServeProcess
from tests.support.slapd import Slapd

REPO = Path(__file__).resolve().parents[1]
#: Deterministic property tests (the same examples everywhere); a loaded CI
#: machine must not turn slow example generation into a failure.
PROPERTY = settings(
    deadline=None,
    max_examples=200,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)

# -- statistics -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("statistic", "dof", "p"),
    [
        (3.841, 1, 0.05),
        (5.991, 2, 0.05),
        (11.070, 5, 0.05),
        (18.307, 10, 0.05),
        (43.773, 30, 0.05),
        (124.342, 100, 0.05),
        (6.635, 1, 0.01),
        (13.277, 4, 0.01),
        (2.706, 1, 0.10),
        (0.455, 1, 0.50),
    ],
)
def test_chi_square_sf_matches_published_critical_values(
    statistic: float, dof: int, p: float
) -> None:
    """The p-value of a tabulated critical value is the table's significance level."""
    assert chi_square_sf(statistic, dof) == pytest.approx(p, abs=1e-4)


def _closed_form_sf(x: float, dof: int) -> float:
    """The chi-square survival function by its closed forms (dof 1, 3 or even)."""
    if dof == 1:
        return math.erfc(math.sqrt(x / 2))
    if dof == 3:
        return math.erfc(math.sqrt(x / 2)) + math.sqrt(2 * x / math.pi) * math.exp(-x / 2)
    half = x / 2
    return math.exp(-half) * sum(half**i / math.factorial(i) for i in range(dof // 2))


@PROPERTY
@given(
    x=st.floats(min_value=0.0, max_value=300.0),
    dof=st.sampled_from([1, 2, 3, 4, 6, 10, 20, 40]),
)
def test_chi_square_sf_matches_closed_forms(x: float, dof: int) -> None:
    """Series and continued fraction agree with the closed forms everywhere."""
    assert chi_square_sf(x, dof) == pytest.approx(_closed_form_sf(x, dof), rel=1e-9, abs=1e-14)


def test_regularized_gamma_q_edges_and_errors() -> None:
    """Q(a, 0) = 1, Q(a, inf) = 0, Q(1, x) = exp(-x); bad arguments are refused."""
    assert regularized_gamma_q(2.5, 0.0) == 1.0
    assert regularized_gamma_q(2.5, math.inf) == 0.0
    assert regularized_gamma_q(1.0, 3.0) == pytest.approx(math.exp(-3.0), rel=1e-12)
    with pytest.raises(ValueError, match="positive"):
        regularized_gamma_q(0.0, 1.0)
    with pytest.raises(ValueError, match="non-negative"):
        chi_square_sf(-1.0, 2)


def test_chi_square_evenness_of_counts() -> None:
    """Perfectly even counts give statistic 0, p 1; one category or none has no test."""
    assert chi_square_evenness([10, 10, 10]) == (0.0, 2, 1.0)
    assert chi_square_evenness([5]) == (0.0, 0, 1.0)
    assert chi_square_evenness([0, 0]) == (0.0, 0, 1.0)
    statistic, dof, p = chi_square_evenness([30, 10])
    assert (statistic, dof) == (10.0, 1)
    assert p == pytest.approx(0.0015654, abs=1e-6)


def test_percentile_interpolates_between_ranks() -> None:
    """Percentiles of a sorted list interpolate linearly; empty gives NaN."""
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.5
    assert percentile([1.0, 2.0, 3.0, 4.0], 100) == 4.0
    assert math.isnan(percentile([], 50))


# -- offline simulation -----------------------------------------------------------


def test_synthetic_tokens_are_seeded_16_byte_values_whatever_the_batch() -> None:
    """The same seed gives the same 16-byte tokens in any batch size."""
    one = [t for batch in synthetic_tokens(1000, seed=7, batch=1000) for t in batch]
    many = [t for batch in synthetic_tokens(1000, seed=7, batch=64) for t in batch]
    assert one == many
    assert len(set(one)) == 1000
    assert {len(t) for t in one} == {16}
    assert one != [t for batch in synthetic_tokens(1000, seed=8) for t in batch]


@pytest.mark.parametrize("policy", ["rendezvous", "exchange"])
def test_offline_spread_is_even_within_tolerance(policy: str) -> None:
    """100,000 users over 5 replicas: every share within 2% of the mean, chi-square fine."""
    result = simulate(OfflinePlan(100_000, 5, policy))
    assert result.before.users == 100_000
    assert len(result.before.servers) == 5
    assert result.before.max_over_mean < 1.02
    assert all(0.98 < row.vs_mean < 1.02 for row in result.before.servers)
    assert result.before.p_value > 0.001
    assert result.after is None
    assert result.movement is None


def test_offline_rendezvous_add_moves_one_in_n_plus_one_all_to_the_new_server() -> None:
    """Adding a sixth replica moves ~1/6 of the users, every one of them to it."""
    m = simulate(OfflinePlan(60_000, 5, "rendezvous", "add")).movement
    assert m is not None
    assert m.server == "pf06.example.com"
    assert m.moved_fraction == pytest.approx(1 / 6, abs=0.01)
    assert m.ideal_fraction == 1 / 6
    assert m.unnecessary == 0
    assert m.moved_to["pf06.example.com"] == m.moved
    assert m.spread_over == "moved_from"
    assert m.spread_p_value > 0.001


def test_offline_rendezvous_remove_moves_only_the_removed_servers_users_evenly() -> None:
    """Removing one of 5 replicas moves ~1/5, only its users, evenly over the 4 others."""
    result = simulate(OfflinePlan(60_000, 5, "rendezvous", "remove"))
    m = result.movement
    assert m is not None
    assert m.server == "pf05.example.com"
    assert m.moved_fraction == pytest.approx(0.2, abs=0.01)
    assert m.unnecessary == 0
    assert m.moved_from["pf05.example.com"] == m.moved
    received = [m.moved_to[name] for name in server_names(4)]
    assert all(abs(n / (m.moved / 4) - 1) < 0.1 for n in received)
    assert result.after is not None
    assert len(result.after.servers) == 4


def test_offline_exchange_moves_far_more_than_rendezvous() -> None:
    """The exchange policy moves about half the users on add and remove, many needlessly."""
    for change in ("add", "remove"):
        exchange = simulate(OfflinePlan(30_000, 5, "exchange", change)).movement
        rendezvous = simulate(OfflinePlan(30_000, 5, "rendezvous", change)).movement
        assert exchange is not None
        assert rendezvous is not None
        assert exchange.moved_fraction > 0.45
        assert rendezvous.moved_fraction < 0.25
        assert exchange.unnecessary > 0.2 * exchange.users
        assert rendezvous.unnecessary == 0


@pytest.mark.parametrize("policy", ["rendezvous", "exchange"])
def test_offline_fail_moves_exactly_the_failed_servers_users_and_spreads_them(
    policy: str,
) -> None:
    """A failure moves exactly the failed server's users, spread evenly over the others."""
    result = simulate(OfflinePlan(50_000, 5, policy, "fail"))
    m = result.movement
    assert m is not None
    assert m.server == "pf05.example.com"
    failed_users = next(r.users for r in result.before.servers if r.server == m.server)
    assert m.moved == failed_users
    assert m.moved_fraction == m.ideal_fraction
    assert m.unnecessary == 0
    assert m.spread_over == "moved_to"
    assert m.spread_p_value > 0.001
    assert result.after is not None
    assert {r.server for r in result.after.servers} == set(server_names(4))


def test_movement_from_pairs_separates_caused_and_unnecessary_moves() -> None:
    """Moves to the added server are caused; moves between old servers are unnecessary."""
    change = plan_change("add", ["a", "b"], spare="c")
    pairs = Counter({("a", "a"): 50, ("b", "b"): 30, ("a", "c"): 10, ("b", "c"): 5, ("a", "b"): 5})
    m = Movement.from_pairs(change, pairs)
    assert (m.users, m.moved, m.caused, m.unnecessary) == (100, 20, 15, 5)
    assert m.moved_from == {"a": 15, "b": 5}
    assert m.moved_to == {"a": 0, "b": 5, "c": 15}
    assert m.ideal_fraction == pytest.approx(1 / 3)


# -- command line, JSON, plot ---------------------------------------------------

RUN_KEYS = {"policy", "before", "after", "movement", "traffic", "elapsed_seconds"}
DISTRIBUTION_KEYS = {
    "servers",
    "users",
    "requests",
    "max_over_mean",
    "chi_square",
    "dof",
    "p_value",
}
SERVER_KEYS = {"server", "users", "requests", "share", "vs_mean", "expected"}
MOVEMENT_KEYS = {
    "change",
    "server",
    "description",
    "users",
    "moved",
    "moved_fraction",
    "ideal_fraction",
    "caused",
    "unnecessary",
    "moved_from",
    "moved_to",
    "spread_over",
    "spread_chi_square",
    "spread_dof",
    "spread_p_value",
}
TRAFFIC_KEYS = {
    "requests",
    "succeeded",
    "failed",
    "statuses",
    "errors",
    "elapsed_seconds",
    "requests_per_second",
    "latency_ms",
    "rounds",
    "concurrency",
    "stickiness_violations",
    "prediction_mismatches",
}


def _check_keys(report: dict[str, Any]) -> None:
    assert set(report) == {"version", "mode", "parameters", "runs", "notes"}
    for one in report["runs"]:
        assert set(one) == RUN_KEYS
        for phase in ("before", "after"):
            if one[phase] is not None:
                assert set(one[phase]) == DISTRIBUTION_KEYS
                assert all(set(row) == SERVER_KEYS for row in one[phase]["servers"])
        if one["movement"] is not None:
            assert set(one["movement"]) == MOVEMENT_KEYS
        if one["traffic"] is not None:
            assert set(one["traffic"]) == TRAFFIC_KEYS


def test_offline_json_has_stable_keys(capsys: pytest.CaptureFixture[str]) -> None:
    """--json prints every key, null where it does not apply, for both policies."""
    assert main(["offline", "--users", "3000", "--policy", "both", "--json", "--quiet"]) == 0
    report = json.loads(capsys.readouterr().out)
    _check_keys(report)
    assert report["version"] == 1
    assert report["mode"] == "offline"
    assert [r["policy"] for r in report["runs"]] == ["rendezvous", "exchange"]
    assert all(r["after"] is None and r["movement"] is None for r in report["runs"])
    assert all(r["traffic"] is None for r in report["runs"])
    assert report["parameters"] == {
        "users": 3000,
        "replicas": 4,
        "policy": "both",
        "change": None,
        "seed": 1,
    }
    main(["offline", "--users", "3000", "--change", "remove", "--json", "--quiet"])
    _check_keys(json.loads(capsys.readouterr().out))


def test_offline_table_shows_policies_side_by_side(capsys: pytest.CaptureFixture[str]) -> None:
    """--policy both prints one column group per policy and a movement comparison."""
    assert main(["offline", "--users", "3000", "--policy", "both", "--change", "fail"]) == 0
    out = capsys.readouterr().out
    assert "rendezvous users" in out
    assert "exchange users" in out
    assert "pf04.example.com failed" in out
    assert "unnecessary moves" in out


@pytest.mark.parametrize(
    "argv",
    [
        ["offline", "--users", "0"],
        ["offline", "--users", "many"],
        ["offline", "--replicas", "1"],
        ["offline", "--policy", "random"],
        ["offline", "--change", "explode"],
        ["live", "--at", "1.5"],
        ["live", "--concurrency", "0"],
        ["bogus"],
    ],
)
def test_cli_refuses_bad_arguments_with_status_2(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """argparse refuses malformed or out-of-range values with exit status 2."""
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    assert "error:" in capsys.readouterr().err


def test_cli_refuses_inconsistent_live_options_with_status_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Options that cannot go together are refused before anything starts."""
    users = tmp_path / "users.txt"
    users.write_text("alice:alice-pw\n")
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "x").write_text("")
    url = "http://127.0.0.1:1/apps/x/"
    cases = {
        "non-loopback": ["--target", "http://192.0.2.1/apps/", "--users-file", str(users)],
        "no users file": ["--target", url],
        "users file alone": ["--users-file", str(users)],
        "add on a target": ["--target", url, "--users-file", str(users), "--change", "add"],
        "fail without control": ["--target", url, "--users-file", str(users), "--change", "fail"],
        "one request and a change": ["--requests-per-user", "1", "--change", "add"],
        "workdir not empty": ["--workdir", str(busy)],
    }
    for name, extra in cases.items():
        assert main(["live", "--quiet", *extra]) == 2, name
        assert capsys.readouterr().err.startswith("feproxy loadtest: "), name


def test_add_parser_and_run_serve_as_feproxy_subcommand(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`feproxy loadtest offline ...` works through add_parser(subparsers) and run(args)."""
    parser = argparse.ArgumentParser(prog="feproxy")
    add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["loadtest", "offline", "--users", "500", "--json", "--quiet"])
    assert args.command == "loadtest"
    assert run(args) == 0
    assert json.loads(capsys.readouterr().out)["parameters"]["users"] == 500


def test_plot_writes_a_png_of_before_and_after(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--plot FILE.png draws the per-server histograms into a PNG file."""
    png = tmp_path / "spread.png"
    argv = ["offline", "--users", "4000", "--policy", "both", "--change", "add", "--quiet"]
    assert main([*argv, "--plot", str(png)]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert png.stat().st_size > 10_000
    assert f"plot: {png}" in capsys.readouterr().out


def test_plot_without_matplotlib_names_the_extra_before_running(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without matplotlib, --plot fails at once with status 1 naming feproxy[plot]."""
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    monkeypatch.setitem(sys.modules, "matplotlib.backends.backend_agg", None)
    assert main(["offline", "--users", "10", "--plot", str(tmp_path / "x.png")]) == 1
    captured = capsys.readouterr()
    assert "pip install 'feproxy[plot]'" in captured.err
    assert captured.out == ""


def test_missing_slapd_falls_back_to_ldaptor_with_a_warning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without slapd the live stack serves the generated LDIF with ldaptor, and says so."""
    monkeypatch.setattr(stack_module, "find_slapd", lambda: False)
    ldif = tmp_path / "d.ldif"
    ldif.write_text(directory_ldif(generate_users(3, 1), server_names(2)))
    warnings: list[str] = []
    plan = stack_module.StackPlan(users=3, replicas=2)
    directory = stack_module._start_directory(plan, ldif, tmp_path, warnings.append)
    try:
        assert directory.kind == "ldaptor"
        assert directory.url.startswith("ldap://127.0.0.1:")
        assert len(warnings) == 1
        assert "slapd not found" in warnings[0]
    finally:
        directory.stop()


# -- live runs (real processes) ---------------------------------------------------


def _loadtest(*argv: str, timeout: float = 90) -> tuple[int, dict[str, Any] | None, str]:
    """Run `python -m frontend.loadtest` as a child; its status, JSON report, stderr."""
    env = dict(os.environ, PATH=f"{os.environ.get('PATH', '')}:/usr/sbin")
    done = subprocess.run(
        [sys.executable, "-m", "frontend.loadtest", *argv, "--json", "--quiet"],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
        env=env,
        check=False,
    )
    report = json.loads(done.stdout) if done.stdout.strip() else None
    return done.returncode, report, done.stderr


def _assert_clean_traffic(report: dict[str, Any], requests: int) -> dict[str, Any]:
    _check_keys(report)
    (one,) = report["runs"]
    traffic = one["traffic"]
    assert traffic["requests"] == requests
    assert traffic["failed"] == 0
    assert traffic["stickiness_violations"] == {"before": 0, "after": 0}
    assert traffic["prediction_mismatches"] == 0
    assert [r["after_change"] for r in traffic["rounds"]] == [False, True]
    assert sum(r["requests"] for r in traffic["rounds"]) == requests
    assert report["parameters"]["directory"] == "slapd"
    return dict(one)


@pytest.mark.slow
def test_live_fail_moves_exactly_the_failed_servers_users() -> None:
    """150 users x 2 over 3 replicas: the failed replica's users, and only they, move."""
    status, report, stderr = _loadtest(
        "live", "--users", "150", "--requests-per-user", "2", "--replicas", "3", "--change", "fail"
    )
    assert status == 0, stderr
    assert report is not None, stderr
    one = _assert_clean_traffic(report, 300)
    m = one["movement"]
    assert m["server"] == "pf03.example.com"
    assert m["unnecessary"] == 0
    assert m["moved"] == next(
        r["users"] for r in one["before"]["servers"] if r["server"] == m["server"]
    )
    assert m["moved_fraction"] == m["ideal_fraction"]
    assert m["moved"] > 0
    assert {r["server"] for r in one["after"]["servers"]} == {
        "pf01.example.com",
        "pf02.example.com",
    }


@pytest.mark.slow
def test_live_add_moves_about_one_in_n_plus_one_to_the_new_replica() -> None:
    """Adding a 4th replica (directory + SIGHUP) moves ~1/4 of the users, all to it."""
    status, report, stderr = _loadtest(
        "live", "--users", "150", "--requests-per-user", "2", "--replicas", "3", "--change", "add"
    )
    assert status == 0, stderr
    assert report is not None, stderr
    one = _assert_clean_traffic(report, 300)
    m = one["movement"]
    assert m["server"] == "pf04.example.com"
    assert m["unnecessary"] == 0
    assert m["moved_to"]["pf04.example.com"] == m["moved"]
    assert abs(m["moved_fraction"] - 0.25) < 0.1
    assert m["ideal_fraction"] == 0.25


def _processes_mentioning(text: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if text.encode() in cmdline:
                found.append(int(entry.name))
    return found


@pytest.mark.slow
def test_live_interrupt_stops_every_child(tmp_path: Path) -> None:
    """Ctrl-C in the middle of a run exits 130 and leaves no child process behind."""
    workdir = tmp_path / "run"
    env = dict(os.environ, PATH=f"{os.environ.get('PATH', '')}:/usr/sbin")
    argv = ["live", "--users", "2000", "--quiet", "--workdir", str(workdir)]
    child = subprocess.Popen(
        [sys.executable, "-m", "frontend.loadtest", *argv],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
        env=env,
    )
    try:
        deadline = time.monotonic() + 30
        access = workdir / "access.log"
        while not (access.exists() and access.stat().st_size > 0):
            assert child.poll() is None
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert _processes_mentioning(str(workdir))
        child.send_signal(signal.SIGINT)
        _, stderr = child.communicate(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == 130
    assert "interrupted" in stderr
    assert _processes_mentioning(str(workdir)) == []


@pytest.mark.slow
def test_live_target_mode_drives_a_running_front_end_and_lifts_its_fault(
    farm: Farm, slapd: Slapd, tmp_path: Path
) -> None:
    """--target with --users-file and --control: a running front end, a failed replica
    that the users leave, and the fault lifted at the end."""
    farm.reset()
    port = farm_free_port()
    s = slapd.settings()
    config = write_config(
        tmp_path / "fe.toml",
        {
            "frontend": {
                "name": "fe1.example.com",
                "listen": [f"tcp:{port}:interface=127.0.0.1"],
                "backend_port": farm.port,
                "connect_timeout": 1.0,
            },
            "hosts": farm_hosts(farm),
            "directory": {
                "url": s.url,
                "bind_dn": s.bind_dn,
                "bind_password": s.bind_password,
                "base_dn": s.base_dn,
                "config_dn": s.config_dn,
            },
            "vdirs": [{"path": "/apps", "kind": "public", "tree": "Apps"}],
        },
    )
    users = tmp_path / "users.txt"
    users.write_text(
        "# the example users with HTTP access\n"
        "alice:alice-pw\nbob:bob-pw\njose:jose-pw\ndave:dave-pw\n"
    )
    with ServeProcess.start(config, ("127.0.0.1", port)):
        status, report, stderr = _loadtest(
            "live",
            "--target",
            f"http://127.0.0.1:{port}/apps/Projects/",
            "--users-file",
            str(users),
            "--control",
            farm.control_url,
            "--requests-per-user",
            "2",
            "--change",
            "fail",
        )
    try:
        assert status == 0, stderr
        assert report is not None, stderr
        _check_keys(report)
        (one,) = report["runs"]
        assert one["policy"] is None
        assert report["parameters"]["replicas"] is None
        assert one["traffic"]["failed"] == 0
        assert one["traffic"]["prediction_mismatches"] is None
        m = one["movement"]
        assert m["unnecessary"] == 0
        assert m["moved_fraction"] == m["ideal_fraction"]
        assert all(s["fault"]["mode"] == "none" for s in farm.servers())
    finally:
        farm.reset()
