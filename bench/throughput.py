"""The keep-alive groups: 1 KiB responses (requests per second) and 1 MiB (GB/s).

Every proxy stands in front of the same nginx origin and gets the same
request: the path feproxy routes as a general-purpose public folder, with
an ``Authorization`` header (which HAProxy, nginx and
``ReverseProxyResource`` just pass on; feproxy checks it against its
credentials cache).  ``direct`` is the origin itself, for scale.  The runs
of a group are interleaved over the rounds (:meth:`bench.rig.Rig.measure`).
"""

from __future__ import annotations

import threading

from bench.options import Run
from bench.rig import BIG_PATH, SMALL_PATH, Rig
from bench.stack import memory_kib, reset_peak_rss

__all__ = ["BIG_LABELS", "QUICK_BIG", "QUICK_SMALL", "SMALL_LABELS", "big", "small"]

#: (run key, label, server) of the 1 KiB runs; feproxy's with one user and with all.
SMALL_LABELS = {
    "direct": ("direct to the origin (nginx)", "origin"),
    "reverse_proxy": ("ReverseProxyResource", "reverse_proxy"),
    "haproxy": ("HAProxy", "haproxy"),
    "nginx": ("nginx", "nginx"),
    "full_one_user": ("feproxy, 1 user", "feproxy"),
    "full_many_users": ("feproxy, many users", "feproxy"),
}
BIG_LABELS = {
    "direct": ("direct to the origin (nginx)", "origin"),
    "reverse_proxy": ("ReverseProxyResource", "reverse_proxy"),
    "haproxy": ("HAProxy", "haproxy"),
    "nginx": ("nginx", "nginx"),
    "full": ("feproxy, full path", "feproxy"),
}
# --quick, a smoke test, loads only what the targets compare (wrk runs last 1 s at least).
QUICK_SMALL = ("reverse_proxy", "haproxy", "nginx", "full_many_users")
QUICK_BIG = ("haproxy", "full")


def small(rig: Rig) -> None:
    """1 KiB responses through every proxy, interleaved; LDAP operations meanwhile."""
    one = [rig.cycling[0].authorization]
    many = [u.authorization for u in rig.cycling]
    runs = []
    for key, (label, server) in SMALL_LABELS.items():
        if rig.o.quick and key not in QUICK_SMALL:
            continue
        auths = many if key == "full_many_users" else one
        shown = label.replace("many", str(len(many)))
        runs.append(Run(key, shown, rig.url(server, SMALL_PATH), auths))
    mark = rig.slapd_mark()
    metric = rig.ldap_metric()
    found = rig.measure("small", runs)
    rig.results.small = found
    rig.results.warm_ops = rig.slapd_ops(mark)
    after = rig.ldap_metric()
    rig.results.warm_metric = None if metric is None or after is None else after - metric
    rig.results.warm_requests = sum(x.requests for k, x in found.items() if k.startswith("full_"))


def big(rig: Rig) -> None:
    """1 MiB responses through every proxy, interleaved; feproxy's memory meanwhile."""
    fe = rig.frontend
    auths = [rig.cycling[0].authorization]
    runs = [
        Run(key, "1 MiB " + label, rig.url(server, BIG_PATH), auths)
        for key, (label, server) in BIG_LABELS.items()
        if not rig.o.quick or key in QUICK_BIG
    ]
    pid = fe.pid
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
        rig.results.big = rig.measure("big", runs)
    finally:
        stop.set()
        sampler.join()
    after = memory_kib(pid)
    hwm = memory_kib(pid, "VmHWM")
    memory = {
        "rss_before_mib": before / 1024,
        "rss_after_mib": after / 1024,
        "peak_rss_mib": max(hwm if reset else 0, peak[0]) / 1024,
        "vmhwm_mib": hwm / 1024,
        "vmhwm_reset": float(reset),
    }
    memory["growth_mib"] = memory["peak_rss_mib"] - memory["rss_before_mib"]
    rig.results.memory = memory
