"""feproxy's metrics, alerting rules and scrape configuration, checked by
Prometheus' own tool, promtool (Debian package ``prometheus``, installed by
``scripts/install-prometheus``)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,
)
from prometheus_client.parser import text_string_to_metric_families

from frontend import __version__
from frontend.ops.metrics import Load, Metrics
from tests.support.farm import Farm, free_port
from tests.support.serve import ROOT, ServeProcess
from tests.support.slapd import Slapd
from tests.test_end_to_end import fe_config, get

PROMETHEUS_CONF = ROOT / "conf" / "prometheus"
RULES = PROMETHEUS_CONF / "feproxy-rules.yml"
OPENMETRICS = "application/openmetrics-text; version=1.0.0"

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def promtool(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[str]:
    """``promtool ARGS...`` (failing the test when promtool is not installed)."""
    program = shutil.which("promtool")
    if program is None:
        pytest.fail("promtool not found: run scripts/install-prometheus", pytrace=False)
    return subprocess.run(
        [program, *args],
        input=stdin.decode() if stdin is not None else None,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=PROMETHEUS_CONF,
    )


def scrape(admin: int, accept: str | None = None) -> bytes:
    """The body of ``GET /metrics`` on the admin listener."""
    request = urllib.request.Request(f"http://127.0.0.1:{admin}/metrics")
    if accept is not None:
        request.add_header("Accept", accept)
    with urllib.request.urlopen(request, timeout=10) as r:
        body: bytes = r.read()
        return body


def samples(text: str) -> Samples:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def total(got: Samples, name: str, **labels: str) -> float:
    """The sum of the samples of ``name`` whose labels include ``labels``."""
    want = set(labels.items())
    return sum(v for (n, ls), v in got.items() if n == name and want <= ls)


def test_metrics_of_live_traffic_pass_promtool_check_metrics(
    farm: Farm, clean_farm: Farm, slapd_factory: Callable[..., Slapd], tmp_path: Path
) -> None:
    """After 200s, 401s, a 404, a 502, replicas marked unavailable (503) and a
    directory outage (503), a real serve's /metrics passes promtool check
    metrics with no complaint, and its OpenMetrics form parses strictly; the
    version in feproxy_build_info is the status page's."""
    directory = slapd_factory()
    port, admin = free_port(), free_port()
    config = fe_config(
        tmp_path / "fe.toml", port, farm, directory, admin=[f"tcp:{admin}:interface=127.0.0.1"]
    )
    with ServeProcess.start(config, ("127.0.0.1", port)):
        assert get(port, "/exchange/", "alice", "alice-pw")[0] == 200
        assert get(port, "/exchange/", "alice", "alice-pw")[0] == 200
        assert get(port, "/exchweb/hello")[0] == 200
        assert get(port, "/exchange/")[0] == 401
        assert get(port, "/exchange/", "alice", "wrong")[0] == 401
        assert get(port, "/nowhere/", "alice", "alice-pw")[0] == 404
        for server in ("ex2.example.com", "ex3.example.com", "ex4.example.com"):
            clean_farm.set_fault(server, "refuse")
        assert get(port, "/apps/Projects/", "bob", "bob-pw")[0] == 503  # every replica marked
        clean_farm.set_fault("ex1.example.com", "garbage")
        assert get(port, "/exchange/", "alice", "alice-pw")[0] == 502
        directory.stop()
        assert get(port, "/exchange/", "jose", "jose-pw")[0] == 503  # jose was never looked up
        text = scrape(admin)

        got = samples(text.decode())
        for status in ("200", "401", "404", "502", "503"):
            assert total(got, "feproxy_requests_total", status=status) >= 1, status
        assert got[("feproxy_servers_unavailable", frozenset())] == 3
        assert total(got, "feproxy_servers_marked_total") == 3
        assert total(got, "feproxy_ldap_queries_total", result="error") >= 1
        assert got[("feproxy_build_info", frozenset({("version", __version__)}))] == 1
        with urllib.request.urlopen(f"http://127.0.0.1:{admin}/status", timeout=10) as r:
            assert json.load(r)["version"] == __version__  # the status page's, too
        assert got[("feproxy_max_connections", frozenset())] == 10_000
        assert got[("feproxy_open_connections", frozenset())] >= 0

        checked = promtool("check", "metrics", stdin=text)
        assert (checked.returncode, checked.stdout + checked.stderr) == (0, "")

        openmetrics = scrape(admin, OPENMETRICS).decode()
        assert openmetrics.endswith("# EOF\n")
        names = {f.name for f in openmetrics_families(openmetrics)}
        assert {"feproxy_requests", "feproxy_build_info", "feproxy_open_connections"} <= names


def test_alerting_rules_pass_promtool_check_rules() -> None:
    """conf/prometheus/feproxy-rules.yml is a valid rules file, with no lint finding."""
    checked = promtool("check", "rules", "--lint=all", "--lint-fatal", str(RULES))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS: 5 rules found" in checked.stdout
    assert "WARNING" not in checked.stdout + checked.stderr


def test_every_alert_fires_under_promtool_test_rules() -> None:
    """promtool test rules feeds series to each alert of feproxy-rules.yml: each fires
    with its labels and annotations, and none fires for the instance that is fine."""
    tested = promtool("test", "rules", "feproxy-rules.test.yml")
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "SUCCESS" in tested.stdout
    alerts = set(re.findall(r"^\s+- alert: (\w+)$", RULES.read_text(), re.MULTILINE))
    tests = (PROMETHEUS_CONF / "feproxy-rules.test.yml").read_text()
    fired = set(re.findall(r"alertname: (\w+)\n\s+exp_alerts:\n\s+- exp_labels:", tests))
    assert alerts == fired, "every alert needs a test that makes it fire"


def test_scrape_configuration_passes_promtool_check_config() -> None:
    """conf/prometheus/prometheus.yml is a valid configuration whose rule file is
    found and valid, and holds the README's scrape job word for word."""
    checked = promtool("check", "config", "--lint=all", "--lint-fatal", "prometheus.yml")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS: 1 rule files found" in checked.stdout
    readme = (ROOT / "README.md").read_text()
    (snippet,) = re.findall(r"```yaml\n(.*?)```", readme, re.DOTALL)
    assert "job_name: feproxy" in snippet
    assert snippet in (PROMETHEUS_CONF / "prometheus.yml").read_text()


def test_alerting_rules_name_only_metrics_feproxy_exports() -> None:
    """Every feproxy_* name in the rules is a series a front end renders (no typo
    makes an alert silently never fire)."""
    metrics = Metrics(load=lambda: Load(1, 10, 1))
    metrics.request_finished("/exchange", 200, "ex1.example.com", 0.01)
    metrics.referral_followed("/apps")
    metrics.server_marked("ex2.example.com")
    metrics.ldap_query("find_user", 0.01, ok=False)
    exported = {name for name, _ in samples(metrics.render().decode())}
    used = set(re.findall(r"\bfeproxy_\w+", RULES.read_text()))
    assert used
    assert used <= exported, used - exported
