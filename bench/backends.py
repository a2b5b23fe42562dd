"""The two back ends of the small-response runs: the stub farm and bench/backend.py.

The stub farm (``python -m backend_stub``) is a twisted.web application that
records every request and can inject faults; it costs about as much CPU per
request as the proxies being compared, and it runs on their core.  A real
deployment's back ends are other machines, so the harness also measures
against the minimal back end of bench/backend.py, which replays the farm's
own answer for the measured path (:func:`capture_reply`) at a fraction of
the cost.  A second feproxy (:func:`derive_config`) and a second
ReverseProxyResource point at it; :func:`split_runs` parts the interleaved
runs' results into the two groups again.
"""

from __future__ import annotations

import socket
import tomllib
from pathlib import Path
from typing import Any, TypeVar

from frontend.loadtest.tomlwrite import to_toml

__all__ = ["MINIMAL", "capture_reply", "derive_config", "split_runs"]

#: Prefix of the run keys (and the group name) of the runs against bench/backend.py.
MINIMAL = "minimal"

T = TypeVar("T")


def capture_reply(host: str, port: int, path: str) -> bytes:
    """The complete response of ``host:port`` to ``GET path`` (status 200, Content-Length).

    A plain socket, so that the bytes are exactly what the server sent;
    bench/backend.py sets the ``Connection`` header per request itself.
    """
    request = f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n\r\n"
    chunks = []
    with socket.create_connection((host, port), timeout=30) as conn:
        conn.sendall(request.encode("latin-1"))
        while chunk := conn.recv(65536):
            chunks.append(chunk)
    data = b"".join(chunks)
    head, _, body = data.partition(b"\r\n\r\n")
    status = head.split(b"\r\n", 1)[0]
    lengths = [
        int(value)
        for name, _, value in (line.partition(b":") for line in head.split(b"\r\n")[1:])
        if name.strip().lower() == b"content-length"
    ]
    if status.split(b" ")[1:2] != [b"200"] or lengths != [len(body)]:
        raise RuntimeError(f"GET {path} from {host}:{port} answered {status!r} ({len(body)} bytes)")
    return data


def derive_config(
    source: Path, target: Path, *, listen_port: int, backend_port: int, admin_port: int | None
) -> Path:
    """``source`` (a checked feproxy configuration) on other ports, written to ``target``."""
    data: dict[str, Any] = tomllib.loads(source.read_text(encoding="utf-8"))
    frontend = data["frontend"]
    frontend["listen"] = [f"tcp:{listen_port}:interface=127.0.0.1"]
    frontend["backend_port"] = backend_port
    frontend.pop("admin", None)
    if admin_port is not None:
        frontend["admin"] = [f"tcp:{admin_port}:interface=127.0.0.1"]
    target.write_text(to_toml(data), encoding="utf-8")
    return target


def split_runs(found: dict[str, T], prefix: str = MINIMAL) -> tuple[dict[str, T], dict[str, T]]:
    """(the entries keyed ``prefix:key``, by ``key``; the other entries)."""
    mark = prefix + ":"
    ours = {k.removeprefix(mark): v for k, v in found.items() if k.startswith(mark)}
    return ours, {k: v for k, v in found.items() if not k.startswith(mark)}
