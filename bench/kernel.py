"""What the kernel says about listening sockets: its limits, queues and drop counters.

Read only: the benchmark never changes a kernel setting.  ``ListenOverflows``
counts connections that completed their handshake while the listener's
accept queue (its backlog, capped by ``net.core.somaxconn``) was full;
``ListenDrops`` counts every SYN or handshake dropped at a listener, those
included.  Both are TcpExt counters of /proc/net/netstat, for the whole
network namespace: other work on the machine during a burst adds to them.
"""

from __future__ import annotations

import itertools
import shutil
import subprocess
from pathlib import Path

__all__ = ["LISTEN_COUNTERS", "listen_backlog", "listen_counters", "parse_netstat", "settings"]

#: The TcpExt counters read around each burst.
LISTEN_COUNTERS = ("ListenOverflows", "ListenDrops")

_SETTINGS = {
    "net.core.somaxconn": "/proc/sys/net/core/somaxconn",
    "net.ipv4.tcp_max_syn_backlog": "/proc/sys/net/ipv4/tcp_max_syn_backlog",
    "net.ipv4.tcp_syncookies": "/proc/sys/net/ipv4/tcp_syncookies",
}


def settings() -> dict[str, str]:
    """The kernel settings that bound a listener's queues ("?" when unreadable)."""
    found = {}
    for name, path in _SETTINGS.items():
        try:
            found[name] = Path(path).read_text().strip()
        except OSError:
            found[name] = "?"
    return found


def parse_netstat(text: str) -> dict[str, int]:
    """The ``TcpExt`` counters of /proc/net/netstat's text (a line of names, a line of values)."""
    lines = [line.split() for line in text.splitlines()]
    for names, values in itertools.pairwise(lines):
        if names and names[0] == "TcpExt:" and values and values[0] == "TcpExt:":
            return {n: int(v) for n, v in zip(names[1:], values[1:], strict=True)}
    return {}


def listen_counters() -> dict[str, int]:
    """The listen-queue drop counters now (:data:`LISTEN_COUNTERS`; empty if unreadable)."""
    try:
        counters = parse_netstat(Path("/proc/net/netstat").read_text())
    except OSError:
        return {}
    return {name: counters[name] for name in LISTEN_COUNTERS if name in counters}


def listen_backlog(port: int, address: str = "127.0.0.1") -> int | None:
    """The backlog of the TCP listener on ``address:port``, as the kernel holds it
    (``ss``'s Send-Q of a listening socket: what the server asked, capped by somaxconn)."""
    ss = shutil.which("ss") or shutil.which("ss", path="/usr/sbin:/sbin:/usr/bin:/bin")
    if ss is None:
        return None
    done = subprocess.run(
        [ss, "-Hltn", f"sport = :{port}"], capture_output=True, text=True, timeout=30, check=False
    )
    for line in done.stdout.splitlines():
        match line.split():  # State Recv-Q Send-Q Local:Port Peer:Port
            case [_, _, send_q, local, *_] if local == f"{address}:{port}" and send_q.isdigit():
                return int(send_q)
    return None
