"""`feproxy demo` as a newcomer runs it: directory, farm and front end in one process,
taking signals as `feproxy serve` does."""

from __future__ import annotations

import json
import signal
import socket
import time
import tomllib
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

from frontend.loadtest.tomlwrite import to_toml
from tests.support.farm import free_port
from tests.support.serve import ROOT, ServeProcess
from tests.test_end_to_end import get


@dataclass(frozen=True)
class Demo:
    """A running ``feproxy demo`` on free ports, with its configuration file."""

    process: ServeProcess
    config: Path
    fe_port: int
    admin_port: int
    ports: tuple[int, ...]  # every port it listens on (the farm's on 127.0.0.2-5)


def start_demo(tmp_path: Path) -> Demo:
    """The demo of the conf/ files, every port moved to a free one."""
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
    process = ServeProcess.start_command(
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
    return Demo(process, tmp_path / "fe.toml", fe_port, admin_port, tuple(ports))


def _front_end_name(port: int) -> str:
    """The X-Front-End-Server a back end received (the stub echoes /exchweb/ requests)."""
    status, _headers, body = get(port, "/exchweb/echo")
    assert status == 200
    headers = {str(k).lower(): str(v) for k, v in json.loads(body)["headers"]}
    return headers["x-front-end-server"]


def _listening(port: int, address: str = "127.0.0.1") -> bool:
    try:
        socket.create_connection((address, port), timeout=2).close()
    except OSError:
        return False
    return True


def test_demo_serves_logons_referrals_and_admin_on_its_own(tmp_path: Path) -> None:
    """The demo (conf/ files, ports moved to free ones) answers the README's session:
    implicit and explicit logon, 401, 403, a followed referral, and metrics."""
    demo = start_demo(tmp_path)
    fe_port = demo.fe_port
    with demo.process:
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
        with urllib.request.urlopen(f"http://127.0.0.1:{demo.admin_port}/metrics", timeout=10) as r:
            assert b"feproxy_requests_total" in r.read()


def test_demo_reloads_its_front_end_configuration_on_sighup_and_stays_up(
    tmp_path: Path,
) -> None:
    """SIGHUP after editing --config: the front end's new name reaches the back ends,
    the process lives on; a broken file is refused and the last one keeps serving."""
    demo = start_demo(tmp_path)
    with demo.process:
        assert _front_end_name(demo.fe_port) == "fe1.example.com"
        demo.config.write_text(
            demo.config.read_text().replace('name = "fe1.example.com"', 'name = "fe2.example.com"')
        )
        demo.process.signal(signal.SIGHUP)
        deadline = time.monotonic() + 20
        while _front_end_name(demo.fe_port) != "fe2.example.com":
            assert time.monotonic() < deadline, demo.process.errors()
            time.sleep(0.05)
        assert demo.process.proc.poll() is None
        assert "configuration reloaded from" in demo.process.errors()

        demo.config.write_text("[frontend]\nlisten = 80\n")
        demo.process.signal(signal.SIGHUP)
        deadline = time.monotonic() + 20
        while "configuration not reloaded" not in demo.process.errors():
            assert time.monotonic() < deadline, demo.process.errors()
            time.sleep(0.05)
        assert _front_end_name(demo.fe_port) == "fe2.example.com"
        assert demo.process.proc.poll() is None


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_demo_stops_everything_cleanly_on_sigterm_and_ctrl_c(
    tmp_path: Path, signum: signal.Signals
) -> None:
    """SIGTERM or SIGINT: exit 0, a line saying it stopped, and the front end, the
    admin listener, the directory and the farm no longer listen."""
    demo = start_demo(tmp_path)
    with demo.process:
        assert get(demo.fe_port, "/exchange/", "alice", "alice-pw")[0] == 200
        demo.process.signal(signum)
        assert demo.process.proc.wait(30) == 0, demo.process.errors()
        log = demo.process.errors()
        assert "feproxy demo stopped: front end, stub farm and directory closed" in log
        assert "Traceback" not in log
    fe_port, backend_port, control_port, ldap_port, admin_port = demo.ports
    assert not any(_listening(port) for port in (fe_port, control_port, ldap_port, admin_port))
    assert not _listening(backend_port, "127.0.0.2")
