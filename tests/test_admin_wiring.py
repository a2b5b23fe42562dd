"""The admin listener of a running `feproxy serve`: metrics and status reflect traffic."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families
from twisted.internet import error as ierror

from tests.fakes import FakeBackends, FakeResponse, Sent, front_end
from tests.support.farm import Farm, free_port
from tests.support.serve import ServeProcess
from tests.support.slapd import Slapd
from tests.test_end_to_end import fe_config, get
from tests.test_mailbox_memory import basic
from tests.test_public_memory import farm_like, public_fe


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_requests_referrals_and_marks_are_counted_in_memory() -> None:
    """The resource reports each request by vdir/status/back end, referrals and marks."""

    def answer(s: Sent) -> FakeResponse | BaseException:
        return ierror.ConnectionRefusedError() if s.server == "ex2.example.com" else farm_like(s)

    fe, _ = public_fe(answer, users=40)
    for n in range(40):
        fe.request("GET", "http://fe/apps/Archive/", headers=_basic(f"u{n}"))
    got = samples(fe.runtime_metrics.render().decode())
    assert (
        got[
            (
                "feproxy_requests_total",
                (("backend", "ex3.example.com"), ("status", "200"), ("vdir", "/apps")),
            )
        ]
        == 40
    )
    assert got[("feproxy_servers_marked_total", (("server", "ex2.example.com"),))] == 1
    assert got[("feproxy_referrals_total", (("vdir", "/apps"),))] >= 1


def _basic(user: str) -> dict[str, str]:
    return basic(user, "pw")


def test_unrouted_request_is_counted_without_a_vdir() -> None:
    """A 404 outside every virtual directory is counted under vdir "-"."""
    fe = front_end(FakeBackends(lambda _s: FakeResponse()))
    fe.request("GET", "http://fe/nowhere")
    got = samples(fe.runtime_metrics.render().decode())
    assert (
        got[("feproxy_requests_total", (("backend", "-"), ("status", "404"), ("vdir", "-")))] == 1
    )


def test_admin_listener_serves_metrics_and_status_of_live_traffic(
    farm: Farm, clean_farm: Farm, slapd: Slapd, tmp_path: Path
) -> None:
    """After real requests, /metrics counts them and the LDAP queries behind them,
    and /status lists the back ends with the mark of an unreachable one."""
    port, admin = free_port(), free_port()
    config = fe_config(
        tmp_path / "fe.toml", port, farm, slapd, admin=[f"tcp:{admin}:interface=127.0.0.1"]
    )
    with ServeProcess.start(config, ("127.0.0.1", port)):
        assert get(port, "/exchange/", "alice", "alice-pw")[0] == 200
        assert get(port, "/exchange/", "alice", "alice-pw")[0] == 200
        clean_farm.set_fault("ex3.example.com", "refuse")
        for user in ("alice", "bob", "jose"):
            get(port, "/apps/Projects/", user, f"{user}-pw")
        base = f"http://127.0.0.1:{admin}"
        with urllib.request.urlopen(base + "/metrics", timeout=10) as r:
            got = samples(r.read().decode())
        key = (
            "feproxy_requests_total",
            (("backend", "ex1.example.com"), ("status", "200"), ("vdir", "/exchange")),
        )
        assert got[key] == 2
        assert (
            got[("feproxy_ldap_queries_total", (("operation", "find_user"), ("result", "ok")))] >= 1
        )
        assert got[("feproxy_cache_hits_total", (("cache", "user"),))] >= 1
        with urllib.request.urlopen(base + "/status", timeout=10) as r:
            status = json.loads(r.read())
        by_name = {b["name"]: b for b in status["backends"]}
        assert by_name["ex1.example.com"]["last_status"] == 200
        assert status["config"]["path"] == str(config)
        if "ex3.example.com" in status["marks"]:  # only if a user hashed to ex3
            assert by_name["ex3.example.com"]["unavailable_until"] > status["now"]
        with urllib.request.urlopen(base + "/", timeout=10) as r:
            page = r.read().decode()
        assert "ex1.example.com" in page
        assert "<html" in page.lower()
