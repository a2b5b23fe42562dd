"""conf/feproxy.service: systemd accepts it, it says what operators rely on, and
feproxy runs inside its seccomp sandbox (system call filter, W^X memory,
address families), TLS and --workers included."""

from __future__ import annotations

import http.client
import shutil
import signal
import ssl
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from frontend.loadtest.slapd import Slapd
from tests.support.farm import Farm, free_port
from tests.support.notify import NotifySocket
from tests.support.sandbox import read_unit
from tests.support.serve import ROOT, ServeProcess
from tests.support.tls import self_signed
from tests.test_end_to_end import fe_config
from tests.test_workers import children

UNIT = ROOT / "conf" / "feproxy.service"


def _sandbox(unit: Path = UNIT) -> tuple[str, ...]:
    """The command prefix that runs what follows inside ``unit``'s seccomp filters."""
    return (sys.executable, "-m", "tests.support.sandbox", str(unit), "--")


def _with_mdwe(tmp_path: Path) -> Path:
    """The unit plus MemoryDenyWriteExecute=yes (which it leaves out, for TLS)."""
    unit = tmp_path / "mdwe.service"
    unit.write_text(
        UNIT.read_text().replace("[Install]", "MemoryDenyWriteExecute=yes\n\n[Install]")
    )
    return unit


def _systemd_analyze() -> str:
    found = shutil.which("systemd-analyze")
    assert found is not None, "scripts/install-systemd-tools installs systemd-analyze"
    return found


def test_systemd_analyze_verify_accepts_the_unit(tmp_path: Path) -> None:
    """`systemd-analyze verify` finds nothing to say (no unknown key, no bad value),
    with ExecStart pointed at this checkout's feproxy as the README says for a venv."""
    feproxy = Path(sys.executable).with_name("feproxy")
    assert feproxy.exists()
    unit = tmp_path / "feproxy.service"
    unit.write_text(UNIT.read_text().replace("/usr/bin/feproxy", str(feproxy)))
    done = subprocess.run(
        [_systemd_analyze(), "verify", str(unit)], capture_output=True, text=True, check=False
    )
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")
    broken = tmp_path / "broken.service"  # and it would say something if it had to
    broken.write_text(unit.read_text().replace("NoNewPrivileges=", "NoNewPrivilege="))
    done = subprocess.run(
        [_systemd_analyze(), "verify", str(broken)], capture_output=True, text=True, check=False
    )
    assert "Unknown key" in done.stderr


def test_the_unit_is_a_notify_service_reloaded_by_sighup_and_hardened() -> None:
    """Type=notify with NotifyAccess=main, ExecStart serve --config, reload by
    SIGHUP, restart on failure, a watchdog, and the hardening the README promises."""
    unit = read_unit(UNIT)
    service = {key: unit.value("Service", key) for key, _ in unit.sections["Service"]}
    assert service["ExecStart"] is not None
    assert service["ExecStart"].startswith(
        "/usr/bin/feproxy serve --config /etc/feproxy/feproxy.toml"
    )
    assert "--access-log /var/log/feproxy/" in service["ExecStart"]
    expected = {
        "Type": "notify",
        "NotifyAccess": "main",
        "ExecReload": "/bin/kill -HUP $MAINPID",
        "Restart": "on-failure",
        "WatchdogSec": "30",
        "LimitNOFILE": "65536",
        "DynamicUser": "yes",
        "NoNewPrivileges": "yes",
        "PrivateTmp": "yes",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "AmbientCapabilities": "CAP_NET_BIND_SERVICE",
        "CapabilityBoundingSet": "CAP_NET_BIND_SERVICE",
        "LogsDirectory": "feproxy",
        "RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX",
        "SystemCallArchitectures": "native",
        "ProtectKernelTunables": "yes",
        "ProtectControlGroups": "yes",
        "LockPersonality": "yes",
    }
    assert {k: service.get(k) for k in expected} == expected
    # Stopping waits for stop_timeout (30 s) and 2 s of closing before systemd kills.
    assert int(service["TimeoutStopSec"] or 0) > 32
    assert unit.values("Service", "SystemCallFilter") == [
        "@system-service",
        "~@privileged @resources",
    ]
    assert unit.value("Install", "WantedBy") == "multi-user.target"


def test_the_sandbox_emulation_kills_and_refuses_what_a_unit_forbids(tmp_path: Path) -> None:
    """The emulation is not a no-op: setuid() (in @privileged) kills with SIGSYS, a
    netlink socket is refused, and with MemoryDenyWriteExecute a writable and
    executable mapping too."""
    killed = subprocess.run(
        [*_sandbox(), sys.executable, "-c", "import os; os.setuid(0)"], check=False
    )
    assert killed.returncode == -signal.SIGSYS
    probe = (
        "import mmap, socket\n"
        "for attempt in (\n"
        "    lambda: mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC),\n"
        "    lambda: socket.socket(socket.AF_NETLINK, socket.SOCK_RAW),\n"
        "):\n"
        "    try:\n"
        "        attempt()\n"
        "    except OSError as e:\n"
        "        print(e.errno)\n"
        "    else:\n"
        "        print('allowed')\n"
    )
    for unit, expected in ((UNIT, ["allowed", "97"]), (_with_mdwe(tmp_path), ["1", "97"])):
        refused = subprocess.run(
            [*_sandbox(unit), sys.executable, "-c", probe],
            capture_output=True,
            text=True,
            check=True,
        )
        assert refused.stdout.split() == expected  # 1 EPERM, 97 EAFNOSUPPORT


def test_memory_deny_write_execute_would_stop_every_tls_listener(tmp_path: Path) -> None:
    """Why the unit leaves MemoryDenyWriteExecute out: under it, making the TLS context
    of an ssl: listener fails (Twisted's ALPN callback is a cffi callback, which needs
    writable and executable memory).  If this starts failing, the unit may set it."""
    key, cert = self_signed(tmp_path)
    make_context = (
        "import sys\n"
        "from frontend.ops.listen import ReloadableTLS\n"
        "try:\n"
        f"    ReloadableTLS({str(key)!r}, {str(cert)!r}, None)\n"
        "except MemoryError as e:\n"
        "    sys.exit(f'MemoryError: {e}')\n"
    )
    plain = subprocess.run([*_sandbox(), sys.executable, "-c", make_context], check=False)
    assert plain.returncode == 0
    done = subprocess.run(
        [*_sandbox(_with_mdwe(tmp_path)), sys.executable, "-c", make_context],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.stderr.startswith("MemoryError: Cannot allocate write+execute memory")


def _get_mailbox(port: int, context: ssl.SSLContext | None) -> tuple[int, bytes]:
    """alice's implicit logon, over TLS when ``context`` is given."""
    headers = {"Host": "mail.example.com", "Authorization": "Basic YWxpY2U6YWxpY2UtcHc="}
    c = (
        http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=15)
        if context is not None
        else http.client.HTTPConnection("127.0.0.1", port, timeout=15)
    )
    try:
        c.request("GET", "/exchange/", headers=headers)
        answer = c.getresponse()
        return answer.status, answer.read()
    finally:
        c.close()


@pytest.mark.usefixtures("clean_farm")
@pytest.mark.parametrize("variant", ["unit-tls", "mdwe-tcp"])
def test_serve_with_workers_runs_inside_the_units_sandbox(
    farm: Farm, slapd: Slapd, tmp_path: Path, variant: str
) -> None:
    """Under the unit's seccomp filters (and, with TCP listeners only, under
    MemoryDenyWriteExecute as well): two workers start, a request is authenticated
    against LDAP and forwarded (over TLS with the unit as shipped), metrics read
    /proc, a reload and a stop go through, and nothing was killed (exit 0)."""
    port, admin = free_port(), free_port()
    if variant == "unit-tls":
        unit = UNIT
        key, cert = self_signed(tmp_path)
        listen = f"ssl:{port}:interface=127.0.0.1:privateKey={key}:certKey={cert}"
        tls = ssl.create_default_context()
        tls.check_hostname = False
        tls.verify_mode = ssl.CERT_NONE
        context: ssl.SSLContext | None = tls
    else:
        unit = _with_mdwe(tmp_path)
        listen = f"tcp:{port}:interface=127.0.0.1"
        context = None
    config = fe_config(
        tmp_path / "fe.toml",
        port,
        farm,
        slapd,
        listen=[listen],
        admin=[f"tcp:{admin}:interface=127.0.0.1"],
    )
    with NotifySocket(tmp_path / "notify") as sd:
        serve = ServeProcess.start_command(
            ["serve", "--config", str(config), "--workers", "2"],
            config,
            None,
            env={"NOTIFY_SOCKET": str(sd.path), "WATCHDOG_USEC": "2000000"},
            wrapper=_sandbox(unit),
        )
        with serve:
            assert "READY=1" in sd.until(lambda m: "READY=1" in m), serve.errors()
            for pid in [serve.pid, *children(serve.pid)]:
                status = Path(f"/proc/{pid}/status").read_text()
                assert "\nSeccomp:\t2\n" in status  # filtered
                assert "\nNoNewPrivs:\t1\n" in status
            assert _get_mailbox(port, context) == (200, b"mailbox alice on ex1.example.com\n")
            with urllib.request.urlopen(f"http://127.0.0.1:{admin}/metrics", timeout=15) as r:
                assert b"process_resident_memory_bytes" in r.read()
            serve.signal(signal.SIGHUP)
            reloaded = sd.until(lambda m: m.fields.get("STATUS", "").startswith("configuration"))
            assert reloaded.fields["STATUS"] == "configuration reloaded by 2 workers"
            serve.signal(signal.SIGTERM)
            assert serve.proc.wait(30) == 0, serve.errors()
        assert "Traceback" not in serve.errors()
