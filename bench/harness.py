"""The benchmark: ``bench/run`` (which runs ``python -m bench.harness``).

Starts on loopback, as child processes (bench/rig.py): a throwaway slapd
(``-d stats``, every LDAP operation logged), an nginx origin serving static
files, and in front of it HAProxy, nginx, Twisted's ``ReverseProxyResource``
and ``feproxy serve`` on its full path (Basic credentials checked against
the directory and cached, routing, forwarding).  The servers run on core 0,
the load generators (wrk, bench/burst.py) on core 1.  Then, in one run:

1. 1 KiB responses through every proxy (feproxy with one user and with
   many): requests per second, latency percentiles, CPU time per request,
   and feproxy's ratios to each peer (bench/throughput.py);
2. 1 MiB responses through every proxy: GB/s, feproxy's peak RSS and RSS
   growth;
3. bursts of new connections, one request each, against HAProxy, nginx and
   feproxy: latency percentiles, failures, SYNs dropped at the listen queue
   (bench/bursts.py);
4. LDAP operations counted in slapd's log: per warm request, and for a new
   user's first request; with ``feproxy serve --workers``, requests per
   second with 1 and 2 workers (bench/extras.py);
5. the targets of issue 11 as PASS/FAIL lines (bench/targets.py).
"""

from __future__ import annotations

import atexit
import json
import shutil
import signal
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from bench import bursts, extras, kernel, peers, report, throughput
from bench.burst import raise_nofile
from bench.load import LoadResult
from bench.options import Options, parse_options
from bench.rig import Rig
from bench.targets import to_json

__all__ = ["Options", "main"]

#: Open files wanted for servers and clients (a burst holds 3,000 connections
#: on each side, HAProxy reserves two per maxconn).
NOFILE = 65536


def _count_lines(path: Path, needle: bytes) -> int:
    try:
        return sum(needle in line for line in path.read_bytes().splitlines())
    except OSError:
        return 0


def _raise_on_signal(signum: int, _frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


def _invalid(rig: Rig) -> bool:
    """Whether some keep-alive run had failed requests (its numbers then mean nothing)."""
    r = rig.results
    workers = [v for v in r.workers.values() if isinstance(v, LoadResult)]
    runs = [*r.small.values(), *r.big.values(), *workers]
    return any(x.errors.get("status", 0) or x.requests == 0 for x in runs)


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_options(argv, __doc__)
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _raise_on_signal)
    # Ctrl-C raises KeyboardInterrupt even when started with SIGINT ignored
    # (a background job of a non-interactive shell): the children must go.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    workdir = Path(tempfile.mkdtemp(prefix="feproxy-bench-"))
    nofile = raise_nofile(NOFILE)  # inherited by every child
    rig = Rig(options, workdir, nofile)
    atexit.register(rig.children.stop_all)
    keep = options.keep
    try:
        rig.results.nofile = nofile
        rig.results.kernel = kernel.settings()
        rig.results.versions = peers.versions()
        report.header(rig.results)
        rig.start()
        throughput.small(rig)
        throughput.big(rig)
        bursts.run(rig)
        extras.new_users(rig)
        extras.workers(rig)
        extras.profile(rig)
    except RuntimeError as e:
        keep = True
        print(f"bench: {e}\nbench: logs kept in {workdir}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("bench: interrupted", file=sys.stderr)
        return 130
    finally:
        rig.children.stop_all()
        rig.results.unreachable = _count_lines(workdir / "feproxy.log", b" unreachable: ")
        if not keep:
            shutil.rmtree(workdir, ignore_errors=True)
    missed = report.summary(rig.results)
    if options.json_path is not None:
        data = to_json(rig.results)
        options.json_path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    if keep:
        print(f"logs kept in {workdir}")
    if _invalid(rig):
        print("bench: some requests failed (see errors): the numbers are not valid")
        return 1
    return 1 if missed and options.strict else 0


if __name__ == "__main__":
    raise SystemExit(main())
