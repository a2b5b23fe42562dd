"""The benchmark: ``bench/run`` (which runs ``python -m bench.harness``).

Starts on loopback, as child processes: a throwaway slapd (``-d stats``,
every LDAP operation logged), the stub farm of conf/topology.toml,
``feproxy serve`` configured like conf/feproxy.toml, and Twisted's
``ReverseProxyResource`` (bench/reverse_proxy.py) in front of the back end
that the front end picks; and the same feproxy and ReverseProxyResource
again in front of bench/backend.py, a minimal back end that replays the
farm's answer (bench/backends.py says why).  The servers run on core 0, the
load generator (wrk) on core 1.  Then, in one run:

1. GET /apps/Projects/ directly to the back end, through
   ReverseProxyResource, and through feproxy (credentials and directory
   cached; one user, then many users in turn), against the minimal back end
   and against the farm: requests per second and latency percentiles, and
   their ratios;
2. GET /exchweb/bytes/1048576 through feproxy (a static vdir): GB/s, the
   front end's peak RSS (VmHWM) and RSS growth;
3. LDAP operations counted in slapd's log: per warm request, and for a new
   user's first request;
4. with ``feproxy serve --workers``, requests per second with 1 and 2 workers;
5. the targets of issue 6 as PASS/FAIL lines.
"""

from __future__ import annotations

import atexit
import http.client
import json
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import tomllib
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import Any

from bench import report
from bench.backends import MINIMAL, capture_reply, derive_config, split_runs
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
from bench.options import Options, Results, Run, parse_options
from bench.profile import find_py_spy, hotspots, record_command
from bench.stack import (
    Child,
    Children,
    cpu_seconds,
    free_port,
    memory_kib,
    reset_peak_rss,
    wait_port,
)
from frontend.loadtest.tomlwrite import to_toml

__all__ = ["Options", "main"]

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"
SMALL_PATH = "/apps/Projects/"
MAILBOX_PATH = "/exchange/"
MIB = 1024 * 1024
BIG_PATH = f"/exchweb/bytes/{MIB}"
SERVER_CPUS = "0"
# --quick, a smoke test, loads each proxy once per back end (wrk runs last 1 s at least).
QUICK_RUNS = ("reverse_proxy", "full_many_users")
LOAD_CPUS = "1"


def _delta(before: float | None, after: float | None) -> float | None:
    return None if before is None or after is None else after - before


def _get(port: int, path: str, user: BenchUser | None) -> tuple[int, dict[str, str]]:
    """One GET to 127.0.0.1:``port`` on a new connection: (status, headers)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        headers = {"Authorization": user.authorization} if user else {}
        conn.request("GET", path, headers=headers)
        response = conn.getresponse()
        response.read()
        return response.status, {k.lower(): v for k, v in response.getheaders()}
    finally:
        conn.close()


class Bench:
    """One benchmark run: its children, ports and measurements."""

    def __init__(self, options: Options, workdir: Path) -> None:
        self.o = options
        self.workdir = workdir
        self.children = Children(workdir, pin=options.pin)
        self.results = Results(options)
        server_cpus = SERVER_CPUS if self.children.pinning else None
        self.server_cpus = server_cpus
        self.loader = Loader(
            self.children, workdir, cpus=LOAD_CPUS if server_cpus else None, tool=options.loadgen
        )
        self.results.tool = self.loader.tool
        self.results.pinning = (
            f"servers on core {SERVER_CPUS}, load generator on core {LOAD_CPUS}"
            if server_cpus
            else "not pinned"
        )
        topology = tomllib.loads((CONF / "topology.toml").read_text(encoding="utf-8"))
        self.hosts = {s["name"]: s["address"] for s in topology["servers"]}
        self.users = bench_users(options.users + 3)
        self.cycling, self.fresh = self.users[: options.users], self.users[options.users :]
        self.fe: Child | None = None
        self.farm: Child | None = None
        self.rp: Child | None = None
        self.slapd: Child | None = None
        self.minimal: list[Child] = []  # bench/backend.py and the proxies in front of it

    # -- setup ---------------------------------------------------------------

    def start(self) -> None:
        """Start slapd, the back ends, the feproxys and ReverseProxyResources; warm the caches."""
        addresses = sorted(set(self.hosts.values()))
        self.farm_port = free_port(addresses)
        self.min_port = free_port(addresses, exclude={self.farm_port})
        ports: list[int] = []
        for _ in range(8):
            ports.append(free_port(exclude={self.farm_port, self.min_port, *ports}))
        self.control_port, self.ldap_port, self.fe_port, self.rp_port = ports[:4]
        self.fe_min_port, self.rp_min_port, self.admin_min_port = ports[5:]
        self.admin_port: int | None = ports[4]

        slapd = prepare_slapd(self.workdir, self.users, self.ldap_port)
        self.slapd = self.children.start(
            "slapd",
            slapd.command(),
            cpus=self.server_cpus,
            cwd=self.workdir,
        )
        farm_argv = [
            sys.executable,
            "-m",
            "backend_stub",
            "--topology",
            str(CONF / "topology.toml"),
        ]
        farm_argv += ["--port", str(self.farm_port), "--control", f"127.0.0.1:{self.control_port}"]
        self.farm = farm = self.children.start("farm", farm_argv, cpus=self.server_cpus, cwd=ROOT)
        self.config_path = self._write_config()
        self.min_config = min_config = derive_config(
            self.config_path,
            self.workdir / "feproxy_min.toml",
            listen_port=self.fe_min_port,
            backend_port=self.min_port,
            admin_port=self.admin_min_port if self.admin_port is not None else None,
        )
        wait_port("127.0.0.1", self.ldap_port, self.slapd)
        for address in addresses:
            wait_port(address, self.farm_port, farm)
        # feproxy connects to back ends on demand: it may start before bench/backend.py.
        fe_min = self._serve("feproxy_min", min_config, workers=None, cpus=self.server_cpus)
        self.start_frontend(workers=None, cpus=self.server_cpus)
        self._warm(self.fe_port)

        status, headers = _get(self.fe_port, SMALL_PATH, self.cycling[0])
        if status != 200 or "x-backend-server" not in headers:
            raise RuntimeError(f"GET {SMALL_PATH} through feproxy answered {status}")
        self.results.backend = headers["x-backend-server"]
        self.backend_address = self.hosts[self.results.backend]
        reply = self.workdir / "reply.http"
        reply.write_bytes(capture_reply(self.backend_address, self.farm_port, SMALL_PATH))
        listen = [a for address in addresses for a in ("--listen", f"{address}:{self.min_port}")]
        argv = [sys.executable, str(ROOT / "bench" / "backend.py"), *listen, "--replay", str(reply)]
        backend = self.children.start("bench_backend", argv, cpus=self.server_cpus, cwd=ROOT)
        self.rp = self._reverse_proxy("reverse_proxy", self.rp_port, self.farm_port)
        rp_min = self._reverse_proxy("reverse_proxy_min", self.rp_min_port, self.min_port)
        self.minimal = [backend, rp_min, fe_min]
        for address in addresses:
            wait_port(address, self.min_port, backend)
        waits = [(self.rp, self.rp_port), (rp_min, self.rp_min_port), (fe_min, self.fe_min_port)]
        for child, port in waits:
            wait_port("127.0.0.1", port, child)
        self._warm(self.fe_min_port, mailboxes=False)

    def _reverse_proxy(self, name: str, port: int, backend_port: int) -> Child:
        """bench/reverse_proxy.py on ``port``, in front of the chosen back end's address."""
        argv = [sys.executable, str(ROOT / "bench" / "reverse_proxy.py"), "--port", str(port)]
        backend = f"{self.backend_address}:{backend_port}"
        return self.children.start(
            name, [*argv, "--backend", backend], cpus=self.server_cpus, cwd=ROOT
        )

    def _write_config(self) -> Path:
        """conf/feproxy.toml, pointed at this run's ports and directory."""
        data: dict[str, Any] = tomllib.loads((CONF / "feproxy.toml").read_text(encoding="utf-8"))
        data["frontend"]["listen"] = [f"tcp:{self.fe_port}:interface=127.0.0.1"]
        data["frontend"]["backend_port"] = self.farm_port
        data["hosts"] = dict(self.hosts)
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

    def ldap_metric(self) -> float | None:
        """Both front ends' ``feproxy_ldap_queries_total``, all labels summed (None: no admin)."""
        if self.admin_port is None:
            return None
        from prometheus_client.parser import text_string_to_metric_families

        total = 0.0
        for port in (self.admin_port, self.admin_min_port):
            try:
                url = f"http://127.0.0.1:{port}/metrics"
                with urllib.request.urlopen(url, timeout=10) as response:
                    text = response.read().decode("utf-8")
            except OSError:
                return None
            total += sum(
                sample.value
                for family in text_string_to_metric_families(text)
                for sample in family.samples
                if sample.name == "feproxy_ldap_queries_total"
            )
        return total

    def start_frontend(self, *, workers: int | None, cpus: str | None) -> None:
        """(Re)start ``feproxy serve`` on the farm; ``workers`` adds ``--workers N``."""
        if self.fe is not None:
            self.children.stop(self.fe)
        self.fe = self._serve("feproxy", self.config_path, workers=workers, cpus=cpus)
        wait_port("127.0.0.1", self.fe_port, self.fe)

    def _serve(self, name: str, config: Path, *, workers: int | None, cpus: str | None) -> Child:
        argv = [sys.executable, "-m", "frontend", "serve", "--config", str(config)]
        argv += ["--access-log", str(self.workdir / f"{name}.access.log")]
        if workers is not None:
            argv += ["--workers", str(workers)]
        return self.children.start(name, argv, cpus=cpus, cwd=ROOT)

    def _warm(self, port: int, *, mailboxes: bool = True) -> None:
        """One request per user (and a mailbox request per store) fills the caches."""
        for user in self.cycling:
            status, _ = _get(port, SMALL_PATH, user)
            if status != 200:
                raise RuntimeError(f"warm-up: GET {SMALL_PATH} as {user.login} answered {status}")
        for user in self.cycling[:2] if mailboxes else ():  # mailboxes on MB1 and MB2
            _get(port, MAILBOX_PATH, user)

    # -- measurements ----------------------------------------------------------

    def _load(self, url: str, auths: list[str], seconds: int) -> LoadResult:
        result = self.loader.run(url, auths, seconds=seconds, connections=self.o.connections)
        for child in self.servers:
            child.check_alive()
        return result

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
                    self._load(run.url, run.auths, self.o.warmup)
                before = self._cpu()
                kept[run.key].append(self._load(run.url, run.auths, seconds))
                for name, used in self._cpu().items():
                    so_far = cpu[run.key].get(name, 0.0)
                    cpu[run.key][name] = so_far + used - before.get(name, used)
        results = {key: merge(found) for key, found in kept.items()}
        for key, by_name in cpu.items():
            requests = results[key].requests
            self.results.cpu.setdefault(group, {})[key] = {
                name: used * 1e6 / requests for name, used in by_name.items() if requests
            }
        for run in runs:
            report.progress(run.label, results[run.key])
        return results

    def _cpu(self) -> dict[str, float]:
        """CPU seconds used so far by each server (its whole process group)."""
        used = {}
        for child in self.servers:
            if child.process.poll() is None:
                used[child.name] = cpu_seconds(child.pid)
        return used

    @property
    def servers(self) -> list[Child]:
        return [
            c for c in (self.fe, self.farm, self.rp, self.slapd, *self.minimal) if c is not None
        ]

    def slapd_mark(self) -> int:
        assert self.slapd is not None
        return self.slapd.log_path.stat().st_size

    def slapd_ops(self, since: int) -> OpCount:
        assert self.slapd is not None
        time.sleep(0.15)  # slapd writes a line as it takes an operation: let it land
        with self.slapd.log_path.open("rb") as f:
            f.seek(since)
            return count_ops(f.read())

    def small_responses(self) -> None:
        """The small-response runs against the minimal back end and the farm, interleaved."""
        one = [self.cycling[0].authorization]
        many = [u.authorization for u in self.cycling]
        runs = []
        for prefix, back, rp, fe in (
            (f"{MINIMAL}:", self.min_port, self.rp_min_port, self.fe_min_port),
            ("", self.farm_port, self.rp_port, self.fe_port),
        ):
            where = " (bench backend)" if prefix else " (farm)"
            users = f"feproxy, {len(many)} users{where}"
            direct = f"http://{self.backend_address}:{back}{SMALL_PATH}"
            group = [
                Run(f"{prefix}direct", "direct to back end" + where, direct, one),
                Run(f"{prefix}reverse_proxy", "ReverseProxyResource" + where, _url(rp), one),
                Run(f"{prefix}full_one_user", "feproxy, 1 user" + where, _url(fe), one),
                Run(f"{prefix}full_many_users", users, _url(fe), many),
            ]
            runs += [r for r in group if not self.o.quick or r.key.endswith(QUICK_RUNS)]
        mark = self.slapd_mark()
        metric = self.ldap_metric()
        found = self.measure("small", runs)
        self.results.small_minimal, self.results.small = split_runs(found)
        cpu = self.results.cpu
        cpu[f"small_{MINIMAL}"], cpu["small"] = split_runs(cpu["small"])
        self.results.warm_ops = self.slapd_ops(mark)
        self.results.warm_metric = _delta(metric, self.ldap_metric())
        self.results.warm_requests = sum(x.requests for k, x in found.items() if "full_" in k)

    def big_responses(self) -> None:
        assert self.fe is not None
        direct = f"http://{self.hosts[self._static_server()]}:{self.farm_port}{BIG_PATH}"
        pid = self.fe.pid
        before = memory_kib(pid)
        reset = reset_peak_rss(pid)
        peak = [before]
        stop = threading.Event()

        def sample() -> None:
            while not stop.wait(0.05):
                try:
                    peak[0] = max(peak[0], memory_kib(pid))
                except (OSError, KeyError):
                    return

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        try:
            fe = f"http://127.0.0.1:{self.fe_port}{BIG_PATH}"
            big = self.measure(
                "big",
                [Run("direct", "1 MiB direct", direct, []), Run("full", "1 MiB feproxy", fe, [])],
            )
        finally:
            stop.set()
            sampler.join()
        after = memory_kib(pid)
        hwm = memory_kib(pid, "VmHWM")
        self.results.big = big
        self.results.memory = {
            "rss_before_mib": before / 1024,
            "rss_after_mib": after / 1024,
            "peak_rss_mib": max(hwm if reset else 0, peak[0]) / 1024,
            "vmhwm_mib": hwm / 1024,
            "vmhwm_reset": float(reset),
        }
        self.results.memory["growth_mib"] = self.results.memory["peak_rss_mib"] - before / 1024

    def _static_server(self) -> str:
        config = tomllib.loads(self.config_path.read_text(encoding="utf-8"))
        for vdir in config.get("vdirs", []):
            if vdir.get("kind") == "static" and BIG_PATH.startswith(vdir["path"].rstrip("/") + "/"):
                return str(vdir["servers"][0])
        raise RuntimeError(f"no static vdir serves {BIG_PATH} in the configuration")

    def new_users(self) -> None:
        """LDAP operations of a new user's first request, and of the second one."""
        out = self.results.new_user
        for key, path, user in (
            ("public", SMALL_PATH, self.fresh[0]),
            # alice (conf/directory.ldif) has a mailbox on the farm; no run used her yet.
            ("mailbox", MAILBOX_PATH, BenchUser("alice", "alice-pw")),
        ):
            mark, metric = self.slapd_mark(), self.ldap_metric()
            status, _ = _get(self.fe_port, path, user)
            first = self.slapd_ops(mark)
            mark, metric2 = self.slapd_mark(), self.ldap_metric()
            status2, _ = _get(self.fe_port, path, user)
            second = self.slapd_ops(mark)
            out[key] = {
                "path": path,
                "status": [status, status2],
                "first": first,
                "second": second,
                "metric": [_delta(metric, metric2), _delta(metric2, self.ldap_metric())],
            }

    def workers(self) -> None:
        """Requests per second with ``--workers`` 1 and 2, on the same cores."""
        if not self.o.workers:
            self.results.workers = {"skipped": "not run (--no-workers or --quick)"}
            return
        help_text = subprocess.run(
            [sys.executable, "-m", "frontend", "serve", "--help"],
            capture_output=True,
            text=True,
            cwd=ROOT,
            check=False,
        ).stdout
        if "--workers" not in help_text:
            self.results.workers = {"skipped": "feproxy serve has no --workers option yet"}
            return
        # Both cores for the front end (the scaling is what is measured), so
        # its processes share core 1 with the load generator: compare the two
        # numbers with each other, not with the pinned runs above.  Against
        # the minimal back end: against the farm, the farm's own core is
        # what limits, whatever the number of workers.
        cpus = "0,1" if self.server_cpus else None
        fe = f"http://127.0.0.1:{self.fe_min_port}{SMALL_PATH}"
        one = [self.cycling[0].authorization]
        rps: dict[str, Any] = {"front_end_cpus": cpus or "any"}
        fe_min = self.minimal[2]
        for n in (1, 2):
            self.children.stop(fe_min)
            fe_min = self._serve("feproxy_min", self.min_config, workers=n, cpus=cpus)
            self.minimal[2] = fe_min
            wait_port("127.0.0.1", self.fe_min_port, fe_min)
            self._load(fe, one, max(2, self.o.warmup))  # every worker fills its caches
            rps.update(self.measure("workers", [Run(str(n), f"feproxy --workers {n}", fe, one)]))
        self.results.workers = rps

    def profile(self) -> None:
        """py-spy on the front end during a full-path run (not a measured one)."""
        if not self.o.profile:
            return
        py_spy = find_py_spy()
        if py_spy is None:
            self.results.profile = {"skipped": "py-spy is not installed (bench/run --profile)"}
            return
        assert self.fe is not None
        if self.fe.process.poll() is not None or self.o.workers:
            self.start_frontend(workers=None, cpus=self.server_cpus)
            self._warm(self.fe_port)
        raw = self.workdir / "profile.txt"
        seconds = max(5, self.o.duration)
        recorder = subprocess.Popen(
            self.children.command(record_command(py_spy, self.fe.pid, seconds, raw), LOAD_CPUS),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        fe = f"http://127.0.0.1:{self.fe_port}{SMALL_PATH}"
        try:
            self._load(fe, [self.cycling[0].authorization], seconds)
            _, err = recorder.communicate(timeout=seconds + 30)
        finally:
            if recorder.poll() is None:
                recorder.kill()
                recorder.wait()
        if not raw.exists():
            self.results.profile = {"skipped": f"py-spy failed: {err.decode(errors='replace')}"}
            return
        by_self, by_total, samples = hotspots(raw.read_text(errors="replace"), ROOT)
        kept = Path(tempfile.gettempdir()) / "feproxy-bench-profile.txt"
        shutil.copyfile(raw, kept)
        self.results.profile = {
            "samples": samples,
            "self": by_self,
            "total": by_total,
            "raw": str(kept),
        }


def _url(port: int) -> str:
    return f"http://127.0.0.1:{port}{SMALL_PATH}"


def _count_lines(path: Path, needle: bytes) -> int:
    try:
        return sum(needle in line for line in path.read_bytes().splitlines())
    except OSError:
        return 0


def _raise_on_signal(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_options(argv, __doc__)
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _raise_on_signal)
    # Ctrl-C raises KeyboardInterrupt even when started with SIGINT ignored
    # (a background job of a non-interactive shell): the children must go.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    workdir = Path(tempfile.mkdtemp(prefix="feproxy-bench-"))
    bench = Bench(options, workdir)
    atexit.register(bench.children.stop_all)
    keep = options.keep
    try:
        report.header(bench.results)
        bench.start()
        bench.small_responses()
        bench.big_responses()
        bench.new_users()
        bench.workers()
        bench.profile()
    except RuntimeError as e:
        keep = True
        print(f"bench: {e}\nbench: logs kept in {workdir}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("bench: interrupted", file=sys.stderr)
        return 130
    finally:
        bench.children.stop_all()
        bench.results.unreachable = sum(
            _count_lines(workdir / f"{name}.log", b" unreachable: ")
            for name in ("feproxy", "feproxy_min")
        )
        if not keep:
            shutil.rmtree(workdir, ignore_errors=True)
    missed = report.summary(bench.results)
    if options.json_path is not None:
        data = report.to_json(bench.results)
        options.json_path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    if keep:
        print(f"logs kept in {workdir}")
    workers = [v for v in bench.results.workers.values() if isinstance(v, LoadResult)]
    small = [*bench.results.small.values(), *bench.results.small_minimal.values()]
    runs = [*small, *bench.results.big.values(), *workers]
    if any(x.errors.get("status", 0) or x.requests == 0 for x in runs):
        print("bench: some requests failed (see errors): the numbers are not valid")
        return 1
    return 1 if missed and options.strict else 0


if __name__ == "__main__":
    raise SystemExit(main())
