"""A burst of new connections: N at once, one request each, every latency kept.

``python -m bench.burst --url URL --connections N [--authorizations FILE]
[--deadline SECONDS]`` issues N non-blocking ``connect()`` calls to the
URL's host and port back to back (no semaphore, no pacing: every connection
is started before the first answer is read), sends one ``GET`` on each as it
connects, with ``Connection: close`` (cycling through the ``Authorization``
values of FILE, a JSON list), and reads each response to its end.  A
connection's latency runs from just before its ``connect()`` to the last
byte of its response body (by ``Content-Length``, or the server's close
without one).  Each connection has ``--deadline`` seconds (30) for all of it.

It prints one line, ``BURSTJSON {...}``: every successful latency in
milliseconds, the failures by kind (``connect``: refused, or reset before
the request went out; ``timeout``: deadline passed; ``read``: the connection
broke or closed before a complete response; ``status``: a complete response
whose status is not 2xx), its own CPU time and the wall time of the whole
burst, so that a saturated client can be told from a slow server.

One ``epoll`` loop over plain non-blocking sockets, standard library only:
asyncio's transports cost about three times as much CPU per connection,
enough for the client to be what a fast server's latencies measure.  Run
it pinned to a core of its own.
"""

from __future__ import annotations

import argparse
import errno
import json
import resource
import select
import socket
import time
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlsplit

__all__ = ["MARK", "main", "raise_nofile"]

MARK = "BURSTJSON "

_SUCCESS = range(200, 300)  # the 2xx statuses
_SWEEP_S = 0.1  # seconds between deadline sweeps (and the longest wait in poll)


def raise_nofile(wanted: int) -> int:
    """Raise this process's soft RLIMIT_NOFILE towards ``wanted`` (and the hard
    limit too when allowed); the soft limit in force afterwards."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= wanted:
        return soft
    if hard != resource.RLIM_INFINITY and hard < wanted:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, wanted))
        except (ValueError, OSError):
            wanted = hard  # not allowed to raise the hard limit: up to it
        else:
            return wanted
    resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    return wanted


class _Conn:
    """One connection of the burst, from its ``connect()`` to its response's end."""

    __slots__ = ("data", "request", "sent", "sock", "started", "status", "wanted")

    def __init__(self, sock: socket.socket, request: bytes, started: float) -> None:
        self.sock = sock
        self.request = request
        self.started = started
        self.data = bytearray()
        self.wanted: int | None = None  # head + body length, once the head is in
        self.status = 0
        self.sent = False

    def received(self, data: bytes) -> bool:
        """Take ``data`` (b"" at the server's close); whether the response is complete."""
        if not data:
            return self.wanted is None and self.status != 0  # close-delimited body
        self.data += data
        if self.wanted is None:
            end = self.data.find(b"\r\n\r\n")
            if end < 0:
                return False
            head = bytes(self.data[:end]).split(b"\r\n")
            parts = head[0].split(b" ", 2)
            self.status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
            for line in head[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length" and value.strip().isdigit():
                    self.wanted = end + 4 + int(value.strip())
            if self.wanted is None:
                return False
        return len(self.data) >= self.wanted


class _Tally:
    """What the burst's connections found."""

    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.errors = {"connect": 0, "read": 0, "status": 0, "timeout": 0}


class _Burst:
    """The live connections of a burst, on one epoll loop, and what they found."""

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        self.tally = _Tally()
        self.poller = select.epoll()
        self.live: dict[int, _Conn] = {}

    def start(self, host: str, port: int, reqs: list[bytes], connections: int) -> None:
        """Start every connection at once (non-blocking ``connect()``)."""
        for i in range(connections):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setblocking(False)  # noqa: FBT003 - socket.setblocking takes it positionally
            started = time.perf_counter()
            code = sock.connect_ex((host, port))
            if code not in (0, errno.EINPROGRESS):
                sock.close()
                self.tally.errors["connect"] += 1
                continue
            self.live[sock.fileno()] = _Conn(sock, reqs[i % len(reqs)], started)
            self.poller.register(sock, select.EPOLLOUT)

    def ready(self, conn: _Conn, now: float) -> None:
        """Serve a connection the poller found ready: send its request, or read."""
        if not conn.sent:
            self._send(conn, now)
            return
        try:
            data = conn.sock.recv(262144)
        except BlockingIOError:
            return
        except OSError:
            self._end(conn, "read", now)
            return
        if conn.received(data):
            self._end(conn, None, now)
        elif not data:
            self._end(conn, "read", now)

    def _send(self, conn: _Conn, now: float) -> None:
        if conn.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
            self._end(conn, "connect", now)
            return
        try:
            conn.sock.send(conn.request)  # a few hundred bytes: one send
        except OSError:
            self._end(conn, "connect", now)
            return
        conn.sent = True
        self.poller.modify(conn.sock, select.EPOLLIN)

    def expire(self, now: float) -> None:
        """End the connections past their deadline."""
        for conn in [c for c in self.live.values() if now - c.started > self.deadline]:
            self._end(conn, "timeout", now)

    def _end(self, conn: _Conn, error: str | None, now: float) -> None:
        del self.live[conn.sock.fileno()]
        self.poller.unregister(conn.sock)
        conn.sock.close()
        if error is not None:
            self.tally.errors[error] += 1
        elif conn.status in _SUCCESS:
            self.tally.latencies.append((now - conn.started) * 1000)
        else:
            self.tally.errors["status"] += 1

    def close(self) -> None:
        """Close whatever is still open, and the poller."""
        for conn in list(self.live.values()):
            conn.sock.close()
        self.poller.close()


def _run(host: str, port: int, reqs: list[bytes], connections: int, deadline: float) -> _Tally:
    """Every connection started at once, then served by one epoll loop until all end."""
    burst = _Burst(deadline)
    try:
        burst.start(host, port, reqs, connections)
        sweep = time.perf_counter() + _SWEEP_S
        while burst.live:
            for fd, _ in burst.poller.poll(_SWEEP_S):
                burst.ready(burst.live[fd], time.perf_counter())
            now = time.perf_counter()
            if now >= sweep:  # connections past their deadline
                sweep = now + _SWEEP_S
                burst.expire(now)
    finally:
        burst.close()
    return burst.tally


def requests(url: str, auths: Sequence[str]) -> tuple[str, int, list[bytes]]:
    """(host, port, the request bytes for each ``Authorization`` value)."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    made = []
    for auth in auths or [""]:
        lines = [f"GET {path} HTTP/1.1", f"Host: {parts.netloc}"]
        if auth:
            lines.append(f"Authorization: {auth}")
        lines.append("Connection: close")
        made.append(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
    return host, port, made


def burst(url: str, auths: Sequence[str], connections: int, deadline: float) -> dict[str, object]:
    """Run one burst; its results as :func:`main` prints them."""
    host, port, reqs = requests(url, auths)
    cpu = time.process_time()
    started = time.perf_counter()
    tally = _run(host, port, reqs, connections, deadline)
    return {
        "connections": connections,
        "latencies_ms": [round(x, 3) for x in sorted(tally.latencies)],
        "errors": tally.errors,
        "wall_s": time.perf_counter() - started,
        "client_cpu_s": time.process_time() - cpu,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.burst", description=__doc__)
    parser.add_argument("--url", required=True)
    parser.add_argument("--connections", type=int, default=3000)
    parser.add_argument("--authorizations", help="JSON file: list of Authorization values")
    parser.add_argument("--deadline", type=float, default=30.0, metavar="SECONDS")
    args = parser.parse_args(argv)
    auths: list[str] = []
    if args.authorizations:
        with Path(args.authorizations).open(encoding="utf-8") as f:
            auths = json.load(f)
    raise_nofile(args.connections + 100)
    result = burst(args.url, auths, args.connections, args.deadline)
    print(MARK + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
