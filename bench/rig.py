"""The benchmark's rig: its servers, their ports and configurations, and the load runs.

:class:`Rig` starts, on loopback, as its own children (bench/stack.py): a
throwaway slapd logging every operation, the nginx origin, HAProxy, nginx
as a proxy, Twisted's ``ReverseProxyResource`` (bench/reverse_proxy.py) and
``feproxy serve``, every proxy in front of the same origin
(bench/peers.py).  feproxy gets conf/feproxy.toml with this run's ports and
directory, and a ``[hosts]`` table that sends every back-end server name of
the topology to the origin's address, so that it runs its whole path
(Basic credentials checked against the directory, routing by vdir and the
user's hash, forwarding over its keep-alive pool) to the same origin as
the others.  :meth:`Rig.measure` runs interleaved rounds of load
(bench/load.py) and notes each server's CPU time.
"""

from __future__ import annotations

import http.client
import subprocess
import sys
import time
import tomllib
import urllib.request
from collections.abc import Sequence
from http import HTTPStatus
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from bench import peers
from bench.directory import (
    BASE_DN,
    CONFIG_DN,
    SERVICE_DN,
    SERVICE_PASSWORD,
    BenchUser,
    OpCount,
    bench_users,
    count_ops,
    prepare_slapd,
)
from bench.load import Loader, LoadResult, merge
from bench.options import Options, Results, Run
from bench.stack import Child, Children, cpu_seconds, free_port, wait_port
from frontend.loadtest.tomlwrite import to_toml

__all__ = ["BIG_PATH", "LOAD_CPUS", "MAILBOX_PATH", "SMALL_PATH", "Rig", "get"]

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"
#: A general-purpose public folder tree: credentials, directory, the user's hash.
SMALL_PATH = "/apps/Projects/"
BIG_PATH = f"/apps/Projects/{peers.BIG_FILE}"
MAILBOX_PATH = "/exchange/"
ORIGIN_ADDRESS = "127.0.0.1"
SERVER_CPUS = "0"
LOAD_CPUS = "1"


def get(port: int, path: str, user: BenchUser | None) -> tuple[int, bytes]:
    """One GET to 127.0.0.1:``port`` on a new connection: (status, body)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        headers = {"Authorization": user.authorization} if user else {}
        conn.request("GET", path, headers=headers)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


class Rig:
    """One benchmark run's servers and measurements."""

    def __init__(self, options: Options, workdir: Path, nofile: int) -> None:
        self.o = options
        self.workdir = workdir
        self.nofile = nofile
        self.children = Children(workdir, pin=options.pin)
        self.results = Results(options)
        self.server_cpus = SERVER_CPUS if self.children.pinning else None
        self.load_cpus = LOAD_CPUS if self.children.pinning else None
        self.loader = Loader(self.children, workdir, cpus=self.load_cpus, tool=options.loadgen)
        self.results.tool = self.loader.tool
        self.results.pinning = (
            f"servers on core {SERVER_CPUS}, load generator on core {LOAD_CPUS}"
            if self.server_cpus
            else "not pinned"
        )
        topology = tomllib.loads((CONF / "topology.toml").read_text(encoding="utf-8"))
        self.server_names = [s["name"] for s in topology["servers"]]
        self.users = bench_users(options.users + 3)
        self.cycling, self.fresh = self.users[: options.users], self.users[options.users :]
        self.fe: Child | None = None
        self.slapd: Child | None = None
        self.others: dict[str, Child] = {}  # origin, haproxy, nginx, reverse_proxy

    # -- setup ---------------------------------------------------------------

    def start(self) -> None:
        """Start slapd, the origin, the proxies; warm feproxy's caches."""
        ports: list[int] = []
        for _ in range(7):
            ports.append(free_port(exclude=ports))
        self.ldap_port, self.origin_port, self.fe_port, self.rp_port = ports[:4]
        self.haproxy_port, self.nginx_port = ports[4:6]
        self.admin_port: int | None = ports[6]
        self.ports = {
            "origin": self.origin_port,
            "haproxy": self.haproxy_port,
            "nginx": self.nginx_port,
            "reverse_proxy": self.rp_port,
            "feproxy": self.fe_port,
        }
        slapd = prepare_slapd(self.workdir, self.users, self.ldap_port)
        self.slapd = self.children.start(
            "slapd", slapd.command(), cpus=self.server_cpus, cwd=self.workdir
        )
        for server in (
            peers.origin(self.workdir / "origin", self.origin_port, nofile=self.nofile),
            peers.haproxy(
                self.workdir / "haproxy", self.haproxy_port, self.origin_port, nofile=self.nofile
            ),
            peers.nginx_proxy(
                self.workdir / "nginx", self.nginx_port, self.origin_port, nofile=self.nofile
            ),
        ):
            self.others[server.name] = self.children.start(
                server.name, server.argv, cpus=self.server_cpus, cwd=self.workdir
            )
        argv = [sys.executable, str(ROOT / "bench" / "reverse_proxy.py")]
        argv += ["--port", str(self.rp_port), "--backend", f"{ORIGIN_ADDRESS}:{self.origin_port}"]
        self.others["reverse_proxy"] = self.children.start(
            "reverse_proxy", argv, cpus=self.server_cpus, cwd=ROOT
        )
        self.config_path = self._write_config()
        wait_port("127.0.0.1", self.ldap_port, self.slapd)
        for name, child in self.others.items():
            wait_port("127.0.0.1", self.ports[name], child)
        self.start_frontend(workers=None, cpus=self.server_cpus)
        self.warm()

    def _write_config(self) -> Path:
        """conf/feproxy.toml, pointed at this run's ports, directory and origin."""
        data: dict[str, Any] = tomllib.loads((CONF / "feproxy.toml").read_text(encoding="utf-8"))
        # No backlog in the endpoint: the burst measures the product's default.
        data["frontend"]["listen"] = [f"tcp:{self.fe_port}:interface=127.0.0.1"]
        data["frontend"]["backend_port"] = self.origin_port
        data["hosts"] = dict.fromkeys(self.server_names, ORIGIN_ADDRESS)
        directory = data.setdefault("directory", {})
        directory.pop("bind_password_file", None)
        directory.update(
            url=f"ldap://127.0.0.1:{self.ldap_port}",
            bind_dn=SERVICE_DN,
            bind_password=SERVICE_PASSWORD,
            base_dn=BASE_DN,
            config_dn=CONFIG_DN,
        )
        for key, value in self.o.overrides:
            table, _, name = key.rpartition(".")
            target = data
            for part in filter(None, table.split(".")):
                target = target.setdefault(part, {})
            target[name] = value
        path = self.workdir / "feproxy.toml"
        if self.admin_port is not None:
            # The admin listener's feproxy_ldap_queries_total is the front end's
            # own count, shown beside slapd's; a front end without one (an
            # older configuration schema) runs without it.
            data["frontend"]["admin"] = [f"tcp:{self.admin_port}:interface=127.0.0.1"]
            path.write_text(to_toml(data), encoding="utf-8")
            if self._config_ok(path):
                return path
            del data["frontend"]["admin"]
            self.admin_port = None
        path.write_text(to_toml(data), encoding="utf-8")
        if not self._config_ok(path):
            raise RuntimeError(f"feproxy check-config refused {path}")
        return path

    def _config_ok(self, path: Path) -> bool:
        check = [sys.executable, "-m", "frontend", "check-config", str(path)]
        done = subprocess.run(check, capture_output=True, cwd=ROOT, timeout=60, check=False)
        return done.returncode == 0

    def start_frontend(self, *, workers: int | None, cpus: str | None) -> None:
        """(Re)start ``feproxy serve``; ``workers`` adds ``--workers N``."""
        if self.fe is not None:
            self.children.stop(self.fe)
        argv = [sys.executable, "-m", "frontend", "serve", "--config", str(self.config_path)]
        # As HAProxy's and nginx's logs are off: feproxy has no switch for its
        # access log, so its lines (still formatted) go to /dev/null.
        argv += ["--access-log", "off"]  # as HAProxy's and nginx's logs are off
        if workers is not None:
            argv += ["--workers", str(workers)]
        self.fe = self.children.start("feproxy", argv, cpus=cpus, cwd=ROOT)
        wait_port("127.0.0.1", self.fe_port, self.fe)

    def warm(self) -> None:
        """One request per user (and a mailbox request per store) fills feproxy's caches;
        each must reach the origin (its 1 KiB file)."""
        for user in self.cycling:
            self._check(SMALL_PATH, user, peers.KIB)
        for user in self.cycling[:2]:  # mailboxes on MB1 and MB2
            self._check(MAILBOX_PATH, user, peers.KIB)
        self._check(BIG_PATH, self.cycling[0], peers.MIB)

    def _check(self, path: str, user: BenchUser, size: int) -> None:
        status, body = get(self.fe_port, path, user)
        if status != HTTPStatus.OK or len(body) != size:
            raise RuntimeError(
                f"warm-up: GET {path} as {user.login} through feproxy answered {status}"
                f" with {len(body)} bytes (expected 200 with the origin's {size})"
            )

    def ldap_metric(self) -> float | None:
        """feproxy's ``feproxy_ldap_queries_total``, all labels summed (None: no admin)."""
        if self.admin_port is None:
            return None
        try:
            url = f"http://127.0.0.1:{self.admin_port}/metrics"
            with urllib.request.urlopen(url, timeout=10) as response:
                text = response.read().decode("utf-8")
        except OSError:
            return None
        return sum(
            sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
            if sample.name == "feproxy_ldap_queries_total"
        )

    # -- load ------------------------------------------------------------------

    def url(self, name: str, path: str) -> str:
        """The URL of ``path`` on server ``name`` (a key of :attr:`ports`)."""
        return f"http://127.0.0.1:{self.ports[name]}{path}"

    def load(self, url: str, auths: list[str], seconds: int) -> LoadResult:
        result = self.loader.run(url, auths, seconds=seconds, connections=self.o.connections)
        self.check_alive()
        return result

    def check_alive(self) -> None:
        for child in self.servers:
            child.check_alive()

    def measure(self, group: str, runs: Sequence[Run]) -> dict[str, LoadResult]:
        """Each run's configuration measured in turn, ``rounds`` times over.

        Interleaving the configurations spreads a slow drift of the machine
        (other work on it) over all of them instead of biasing their ratios.
        Each configuration gets a warm-up run (not kept) before its first
        round, and ``duration`` seconds in all.  The servers' CPU time per
        request goes to ``results.cpu[group]``.
        """
        rounds = max(1, min(self.o.rounds, self.o.duration))
        base, extra = divmod(self.o.duration, rounds)
        kept: dict[str, list[LoadResult]] = {run.key: [] for run in runs}
        cpu: dict[str, dict[str, float]] = {run.key: {} for run in runs}
        for n in range(rounds):
            seconds = base + (1 if n < extra else 0)
            for run in runs:
                if n == 0 and self.o.warmup > 0:
                    self.load(run.url, run.auths, self.o.warmup)
                before = self.cpu()
                kept[run.key].append(self.load(run.url, run.auths, seconds))
                add_cpu(cpu[run.key], before, self.cpu())
        results = {key: merge(found) for key, found in kept.items()}
        for key, by_name in cpu.items():
            requests = results[key].requests
            self.results.cpu.setdefault(group, {})[key] = {
                name: used * 1e6 / requests for name, used in by_name.items() if requests
            }
        for run in runs:
            progress(run.label, results[run.key])
        return results

    def cpu(self) -> dict[str, float]:
        """CPU seconds used so far by each server (its whole process group)."""
        used = {}
        for child in self.servers:
            if child.process.poll() is None:
                used[child.name] = cpu_seconds(child.pid)
        return used

    @property
    def frontend(self) -> Child:
        """feproxy's process (RuntimeError before :meth:`start_frontend`)."""
        return _started(self.fe, "feproxy")

    @property
    def servers(self) -> list[Child]:
        return [c for c in (self.fe, self.slapd, *self.others.values()) if c is not None]

    # -- slapd's log -------------------------------------------------------------

    def slapd_mark(self) -> int:
        return _started(self.slapd, "slapd").log_path.stat().st_size

    def slapd_ops(self, since: int) -> OpCount:
        log = _started(self.slapd, "slapd").log_path
        time.sleep(0.15)  # slapd writes a line as it takes an operation: let it land
        with log.open("rb") as f:
            f.seek(since)
            return count_ops(f.read())


def _started(child: Child | None, name: str) -> Child:
    if child is None:
        raise RuntimeError(f"{name} was asked for before it was started")
    return child


def progress(name: str, result: LoadResult) -> None:
    """One line as each run ends."""
    note(f"  ran {name}: {result.rps:,.0f} req/s, p99 {result.p99_ms:.2f} ms")


def note(line: str) -> None:
    """A line of progress, on stderr (stdout stays the report)."""
    print(line, file=sys.stderr, flush=True)


def add_cpu(total: dict[str, float], before: dict[str, float], after: dict[str, float]) -> None:
    """Add each server's CPU seconds between ``before`` and ``after`` to ``total``."""
    for name, used in after.items():
        total[name] = total.get(name, 0.0) + used - before.get(name, used)
