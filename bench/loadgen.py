"""A small closed-loop HTTP/1.1 load generator, used when wrk is missing.

``python -m bench.loadgen --url URL --authorizations FILE --seconds S
--connections N`` keeps N keep-alive connections busy with GET requests for
S seconds, cycling through the ``Authorization`` values listed in FILE (a
JSON list; "" sends none), and prints the same ``BENCHJSON`` summary line as
the wrk script of bench/load.py.  Far slower than wrk: numbers measured with
it say more about it than about the server.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections.abc import Sequence
from http import HTTPStatus
from pathlib import Path
from urllib.parse import urlsplit

__all__ = ["main"]

MARK = "BENCHJSON "


class _Stats:
    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.bytes = 0
        self.errors = {"connect": 0, "read": 0, "write": 0, "status": 0, "timeout": 0}


def _requests(url: str, auths: Sequence[str]) -> list[bytes]:
    parts = urlsplit(url)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    made = []
    for auth in auths or [""]:
        lines = [f"GET {path} HTTP/1.1", f"Host: {parts.netloc}"]
        if auth:
            lines.append(f"Authorization: {auth}")
        made.append(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
    return made


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, int, bool]:
    """(status, bytes read, keep-alive) of one response."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        headers[name.strip().lower()] = value.strip().lower()
    size = len(head)
    if b"content-length" in headers:
        length = int(headers[b"content-length"])
        await reader.readexactly(length)
        size += length
    elif headers.get(b"transfer-encoding") == b"chunked":
        while True:
            line = await reader.readuntil(b"\r\n")
            chunk = int(line.split(b";")[0], 16)
            await reader.readexactly(chunk + 2)
            size += len(line) + chunk + 2
            if chunk == 0:
                break
    else:
        size += len(await reader.read())
        return status, size, False
    return status, size, headers.get(b"connection") != b"close"


async def _connection(
    host: str, port: int, reqs: list[bytes], offset: int, deadline: float, stats: _Stats
) -> None:
    n = offset
    while time.monotonic() < deadline:
        try:
            reader, writer = await asyncio.open_connection(host, port)
        except OSError:
            stats.errors["connect"] += 1
            await asyncio.sleep(0.01)
            continue
        try:
            while time.monotonic() < deadline:
                started = time.monotonic()
                writer.write(reqs[n % len(reqs)])
                n += 1
                status, size, keep = await asyncio.wait_for(_read_response(reader), 10)
                stats.latencies.append(time.monotonic() - started)
                stats.bytes += size
                if status >= HTTPStatus.BAD_REQUEST:  # 4xx and 5xx
                    stats.errors["status"] += 1
                if not keep:
                    break
        except TimeoutError:
            stats.errors["timeout"] += 1
        except (OSError, asyncio.IncompleteReadError, ValueError, IndexError):
            stats.errors["read"] += 1
        finally:
            writer.close()


def _percentile(ordered: list[float], q: float) -> float:
    if not ordered:
        return 0.0
    return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))]


async def _run(url: str, auths: list[str], seconds: float, connections: int) -> dict[str, object]:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    reqs = _requests(url, auths)
    stats = _Stats()
    started = time.monotonic()
    deadline = started + seconds
    await asyncio.gather(
        *(_connection(host, port, reqs, i, deadline, stats) for i in range(connections))
    )
    elapsed = time.monotonic() - started
    lat = sorted(x * 1e6 for x in stats.latencies)
    return {
        "requests": len(lat),
        "duration_us": elapsed * 1e6,
        "bytes": stats.bytes,
        "errors": stats.errors,
        "p50_us": _percentile(lat, 50),
        "p90_us": _percentile(lat, 90),
        "p99_us": _percentile(lat, 99),
        "mean_us": sum(lat) / len(lat) if lat else 0.0,
        "max_us": lat[-1] if lat else 0.0,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.loadgen", description=__doc__)
    parser.add_argument("--url", required=True)
    parser.add_argument("--authorizations", help="JSON file: list of Authorization values")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--connections", type=int, default=10)
    args = parser.parse_args(argv)
    auths: list[str] = []
    if args.authorizations:
        with Path(args.authorizations).open(encoding="utf-8") as f:
            auths = json.load(f)
    result = asyncio.run(_run(args.url, auths, args.seconds, args.connections))
    print(MARK + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
