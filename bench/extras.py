"""The groups that look at feproxy alone: a new user's LDAP operations, workers, a profile."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.directory import BenchUser
from bench.options import Run
from bench.profile import find_py_spy, hotspots, record_command
from bench.rig import MAILBOX_PATH, ROOT, SMALL_PATH, Rig, get

__all__ = ["new_users", "profile", "workers"]


def _delta(before: float | None, after: float | None) -> float | None:
    return None if before is None or after is None else after - before


def new_users(rig: Rig) -> None:
    """LDAP operations of a new user's first request, and of the second one."""
    out = rig.results.new_user
    for key, path, user in (
        ("public", SMALL_PATH, rig.fresh[0]),
        # alice (conf/directory.ldif) has a mailbox; no run used her yet.
        ("mailbox", MAILBOX_PATH, BenchUser("alice", "alice-pw")),
    ):
        mark, metric = rig.slapd_mark(), rig.ldap_metric()
        status, _ = get(rig.fe_port, path, user)
        first = rig.slapd_ops(mark)
        mark, metric2 = rig.slapd_mark(), rig.ldap_metric()
        status2, _ = get(rig.fe_port, path, user)
        second = rig.slapd_ops(mark)
        out[key] = {
            "path": path,
            "status": [status, status2],
            "first": first,
            "second": second,
            "metric": [_delta(metric, metric2), _delta(metric2, rig.ldap_metric())],
        }


def workers(rig: Rig) -> None:
    """Requests per second with ``--workers`` 1 and 2, on the same cores."""
    if not rig.o.workers:
        rig.results.workers = {"skipped": "not run (--no-workers or --quick)"}
        return
    help_text = subprocess.run(
        [sys.executable, "-m", "frontend", "serve", "--help"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    ).stdout
    if "--workers" not in help_text:
        rig.results.workers = {"skipped": "feproxy serve has no --workers option yet"}
        return
    # Both cores for the front end (the scaling is what is measured), so its
    # processes share core 1 with the load generator: compare the two numbers
    # with each other, not with the pinned runs.
    cpus = "0,1" if rig.server_cpus else None
    fe = rig.url("feproxy", SMALL_PATH)
    one = [rig.cycling[0].authorization]
    rps: dict[str, Any] = {"front_end_cpus": cpus or "any"}
    for n in (1, 2):
        rig.start_frontend(workers=n, cpus=cpus)
        rig.load(fe, one, max(2, rig.o.warmup))  # every worker fills its caches
        rps.update(rig.measure("workers", [Run(str(n), f"feproxy --workers {n}", fe, one)]))
    rig.results.workers = rps
    rig.start_frontend(workers=None, cpus=rig.server_cpus)


def profile(rig: Rig) -> None:
    """py-spy on the front end during a full-path run (not a measured one)."""
    if not rig.o.profile:
        return
    py_spy = find_py_spy()
    if py_spy is None:
        rig.results.profile = {"skipped": "py-spy is not installed (bench/run --profile)"}
        return
    if rig.frontend.process.poll() is not None:
        rig.start_frontend(workers=None, cpus=rig.server_cpus)
    rig.warm()
    raw = rig.workdir / "profile.txt"
    seconds = max(5, rig.o.duration)
    recorder = subprocess.Popen(
        rig.children.command(record_command(py_spy, rig.frontend.pid, seconds, raw), rig.load_cpus),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        rig.load(rig.url("feproxy", SMALL_PATH), [rig.cycling[0].authorization], seconds)
        _, err = recorder.communicate(timeout=seconds + 30)
    finally:
        if recorder.poll() is None:
            recorder.kill()
            recorder.wait()
    if not raw.exists():
        rig.results.profile = {"skipped": f"py-spy failed: {err.decode(errors='replace')}"}
        return
    by_self, by_total, samples = hotspots(raw.read_text(errors="replace"), ROOT)
    kept = Path(tempfile.gettempdir()) / "feproxy-bench-profile.txt"
    shutil.copyfile(raw, kept)
    rig.results.profile = {
        "samples": samples,
        "self": by_self,
        "total": by_total,
        "raw": str(kept),
    }
