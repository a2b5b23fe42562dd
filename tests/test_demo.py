"""`feproxy demo` as a newcomer runs it: directory, farm and front end in one process."""

from __future__ import annotations

import tomllib
import urllib.request
from pathlib import Path

from frontend.loadtest.tomlwrite import to_toml
from tests.support.farm import free_port
from tests.support.serve import ROOT, ServeProcess
from tests.test_end_to_end import get


def test_demo_serves_logons_referrals_and_admin_on_its_own(tmp_path: Path) -> None:
    """The demo (conf/ files, ports moved to free ones) answers the README's session:
    implicit and explicit logon, 401, 403, a followed referral, and metrics."""
    ports: list[int] = []
    for _ in range(5):
        ports.append(free_port(exclude=tuple(ports)))
    fe_port, backend_port, control_port, ldap_port, admin_port = ports
    config = tomllib.loads((ROOT / "conf" / "feproxy.toml").read_text())
    config["frontend"]["listen"] = [f"tcp:{fe_port}:interface=127.0.0.1"]
    config["frontend"]["admin"] = [f"tcp:{admin_port}:interface=127.0.0.1"]
    config["frontend"]["backend_port"] = backend_port
    config["directory"]["url"] = f"ldap://127.0.0.1:{ldap_port}"
    topology = tomllib.loads((ROOT / "conf" / "topology.toml").read_text())
    topology["port"] = backend_port
    topology["control"] = f"127.0.0.1:{control_port}"
    (tmp_path / "fe.toml").write_text(to_toml(config))
    (tmp_path / "topology.toml").write_text(to_toml(topology))
    demo = ServeProcess.start_command(
        [
            "demo",
            "--config",
            str(tmp_path / "fe.toml"),
            "--topology",
            str(tmp_path / "topology.toml"),
        ],
        tmp_path / "demo",
        ("127.0.0.1", fe_port),
    )
    with demo:
        assert (
            get(fe_port, "/exchange/", "alice", "alice-pw")[2]
            == b"mailbox alice on ex1.example.com\n"
        )
        assert get(fe_port, "/exchange/bob/", "alice", "alice-pw")[1]["x-backend-server"] == (
            "ex2.example.com"
        )
        assert get(fe_port, "/exchange/")[0] == 401
        assert get(fe_port, "/exchange/", "carol", "carol-pw")[0] == 403
        status, headers, _body = get(fe_port, "/apps/Archive/", "bob", "bob-pw")
        assert (status, headers["x-backend-server"]) == (200, "ex3.example.com")
        with urllib.request.urlopen(f"http://127.0.0.1:{admin_port}/metrics", timeout=10) as r:
            assert b"feproxy_requests_total" in r.read()
