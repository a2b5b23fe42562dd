"""The origin and the peers: nginx serving files, HAProxy and nginx as reverse proxies.

Every proxy of the benchmark stands in front of the same origin: an nginx
instance serving static files from its own directory (:func:`origin`), a
1 KiB file for every path and a 1 MiB file for paths ending in ``1m.bin``,
so that whatever path a proxy forwards (feproxy rewrites none of the
measured ones, but routes by them) gets a known answer at little CPU cost.

HAProxy (:func:`haproxy`) and nginx (:func:`nginx_proxy`) are configured as
an operator would put them in front of such an origin, and fairly: one
process, one thread (HAProxy ``nbthread 1``; nginx ``worker_processes 1``
with its idle master), keep-alive connections to the origin (HAProxy
``option http-keep-alive`` and ``http-reuse always``; nginx
``proxy_http_version 1.1``, an empty ``Connection`` and an ``upstream``
with ``keepalive 64``, as feproxy keeps at most 64 idle connections per back
end), room for 10,000 client connections, no access logs, their listen
backlog left at its default (printed by the harness beside feproxy's).
Each :class:`Server` is a configuration written to a directory of its own
and the command line that runs it in the foreground.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "BIG_FILE",
    "KIB",
    "MIB",
    "Server",
    "haproxy",
    "haproxy_maxconn",
    "nginx_proxy",
    "origin",
    "versions",
]

KIB = 1024
MIB = 1024 * 1024
#: Paths ending in this get the 1 MiB file from the origin; all others the 1 KiB one.
BIG_FILE = "1m.bin"
#: Connections each server must take (a burst is 3,000).
MAX_CONNECTIONS = 10000
#: Idle keep-alive connections kept to the origin (feproxy's max_idle_per_backend).
KEEPALIVE = 64


@dataclass(frozen=True)
class Server:
    """A configured server: how to run it (in the foreground) and where it lives."""

    name: str
    argv: list[str]
    config: Path
    port: int


def _binary(name: str) -> str:
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/local/sbin")
    if found is None:
        raise RuntimeError(f"{name} is not installed (scripts/install-bench-tools installs it)")
    return found


def versions() -> dict[str, str]:
    """The installed HAProxy's and nginx's versions, as they print them."""
    found = {}
    for name, flag, pattern in (
        ("haproxy", "-v", r"HA-?Proxy version (\S+)"),
        ("nginx", "-v", r"nginx version: nginx/(\S+)"),
    ):
        done = subprocess.run(
            [_binary(name), flag], capture_output=True, text=True, timeout=30, check=False
        )
        match = re.search(pattern, done.stdout + done.stderr)
        found[name] = match.group(1) if match else "unknown"
    return found


def _nginx_main(directory: Path, nofile: int) -> str:
    """The main context of an nginx configuration living in ``directory``."""
    # Run as root, nginx's workers would switch to "nobody", which cannot read
    # a private temporary directory: they stay the invoking user instead.
    user = f"user {pwd.getpwuid(os.geteuid()).pw_name};\n" if os.geteuid() == 0 else ""
    return (
        f"{user}"
        "worker_processes 1;\n"
        f"worker_rlimit_nofile {nofile};\n"
        "daemon off;\n"
        f"pid {directory / 'nginx.pid'};\n"
        f"error_log {directory / 'error.log'} error;\n"
        f"events {{ worker_connections {MAX_CONNECTIONS}; }}\n"
    )


def _nginx_http(directory: Path) -> str:
    """The settings every http block here shares: no access log, temp files at home."""
    temp = "".join(
        f"    {kind}_temp_path {directory / (kind + '_temp')};\n"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    return (
        "    access_log off;\n"
        "    default_type application/octet-stream;\n"
        "    keepalive_timeout 60s;\n"
        "    keepalive_requests 1000000;\n"
        f"{temp}"
    )


def _nginx(name: str, directory: Path, port: int, config: str) -> Server:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "nginx.conf"
    path.write_text(config, encoding="utf-8")
    # -e: the error log from the start (not the system's /var/log/nginx/error.log).
    argv = [_binary("nginx"), "-p", str(directory), "-c", str(path)]
    return Server(name, [*argv, "-e", str(directory / "error.log")], path, port)


def origin(directory: Path, port: int, *, nofile: int) -> Server:
    """nginx on 127.0.0.1:``port`` serving 1 KiB for any path, 1 MiB for ``*1m.bin``."""
    www = directory / "www"
    www.mkdir(parents=True, exist_ok=True)
    (www / "1k.bin").write_bytes(b"k" * (KIB - 1) + b"\n")
    (www / BIG_FILE).write_bytes(b"m" * (MIB - 1) + b"\n")
    config = (
        _nginx_main(directory, nofile) + "http {\n" + _nginx_http(directory) + "    sendfile on;\n"
        "    tcp_nodelay on;\n"
        "    server {\n"
        f"        listen 127.0.0.1:{port};\n"
        f"        root {www};\n"
        f"        location ~ {re.escape(BIG_FILE)}$ {{ try_files /{BIG_FILE} =404; }}\n"
        "        location / { try_files /1k.bin =404; }\n"
        "    }\n"
        "}\n"
    )
    return _nginx("origin", directory, port, config)


def nginx_proxy(directory: Path, port: int, origin_port: int, *, nofile: int) -> Server:
    """nginx on 127.0.0.1:``port``, a keep-alive reverse proxy to the origin."""
    config = (
        _nginx_main(directory, nofile)
        + "http {\n"
        + _nginx_http(directory)
        + "    upstream origin {\n"
        f"        server 127.0.0.1:{origin_port};\n"
        f"        keepalive {KEEPALIVE};\n"
        "        keepalive_requests 1000000;\n"
        "    }\n"
        "    server {\n"
        f"        listen 127.0.0.1:{port};\n"
        "        location / {\n"
        "            proxy_pass http://origin;\n"
        "            proxy_http_version 1.1;\n"
        '            proxy_set_header Connection "";\n'
        "        }\n"
        "    }\n"
        "}\n"
    )
    return _nginx("nginx", directory, port, config)


def haproxy_maxconn(nofile: int) -> int:
    """HAProxy's maxconn: 10,000, or what ``nofile`` descriptors allow (two per
    connection and a few of its own: HAProxy refuses to start otherwise)."""
    return min(MAX_CONNECTIONS, (nofile - 100) // 2)


def haproxy(directory: Path, port: int, origin_port: int, *, nofile: int) -> Server:
    """HAProxy on 127.0.0.1:``port`` (``mode http``), keep-alive to the origin."""
    directory.mkdir(parents=True, exist_ok=True)
    maxconn = haproxy_maxconn(nofile)
    path = directory / "haproxy.cfg"
    path.write_text(
        "global\n"
        "    nbthread 1\n"
        f"    maxconn {maxconn}\n"
        "\n"
        "defaults\n"
        "    mode http\n"
        "    option http-keep-alive\n"
        "    http-reuse always\n"
        "    timeout connect 5s\n"
        "    timeout http-request 10s\n"
        "    timeout http-keep-alive 60s\n"
        "    timeout client 60s\n"
        "    timeout server 120s\n"
        "\n"
        "frontend proxy\n"
        f"    bind 127.0.0.1:{port}\n"
        f"    maxconn {maxconn}\n"
        "    default_backend origin\n"
        "\n"
        "backend origin\n"
        f"    server origin 127.0.0.1:{origin_port}\n",
        encoding="utf-8",
    )
    # -db: stay in the foreground (no daemon), as a child of the harness.
    return Server("haproxy", [_binary("haproxy"), "-db", "-f", str(path)], path, port)
