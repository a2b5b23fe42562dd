"""Command line: ``backend-stub --topology FILE [--port N] [--control HOST:PORT]``.

Starts every server of the topology and the control API, prints
``backend-stub ready`` on stdout once all of them listen, logs one line per
request on stderr and runs until SIGTERM or SIGINT (exit status 0).  A bad
topology file exits with status 2, a listener that cannot be opened with
status 1, each with a one-line message on stderr.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import NoReturn

from twisted.internet.defer import Deferred
from twisted.internet.error import CannotListenError
from twisted.internet.task import react
from twisted.logger import globalLogBeginner, textFileLogObserver

from backend_stub.farm import StubFarm
from backend_stub.server import StubReactor
from backend_stub.topology import (
    MAX_PORT,
    Topology,
    TopologyError,
    load_topology,
    parse_host_port,
)

__all__ = ["READY_LINE", "build_parser", "main"]

READY_LINE = "backend-stub ready"


def _port(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= MAX_PORT:
        raise argparse.ArgumentTypeError(f"expected a port in 1..{MAX_PORT}, got {text!r}")
    return int(text)


def _control(text: str) -> tuple[str, int]:
    try:
        return parse_host_port(text, "--control")
    except TopologyError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``backend-stub``."""
    parser = argparse.ArgumentParser(
        prog="backend-stub",
        description="Run a farm of stub Exchange back-end servers for tests.",
    )
    parser.add_argument("--topology", required=True, metavar="FILE", help="topology file (TOML)")
    parser.add_argument("--port", type=_port, metavar="N", help="override the port of all servers")
    parser.add_argument(
        "--control",
        type=_control,
        metavar="HOST:PORT",
        help="override the control API address (loopback only)",
    )
    return parser


def _fail(message: str, status: int) -> NoReturn:
    print(f"backend-stub: {message}", file=sys.stderr, flush=True)
    raise SystemExit(status)


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of the ``backend-stub`` console script."""
    args = build_parser().parse_args(argv)
    try:
        topology = load_topology(args.topology)
    except TopologyError as exc:
        _fail(str(exc), 2)
    topology = topology.with_overrides(port=args.port, control=args.control)

    # The only place that touches the global reactor: react() installs and runs it.
    react(_run, [topology])


async def _run(reactor: StubReactor, topology: Topology) -> None:
    farm = StubFarm(topology, reactor)
    try:
        await farm.start()
    except CannotListenError as exc:
        reason = getattr(exc.socketError, "strerror", None) or exc.socketError
        _fail(f"cannot listen on {exc.interface}:{exc.port}: {reason}", 1)
    # Log (to stderr) only from here on, so that a failed start says one line.
    globalLogBeginner.beginLoggingTo([textFileLogObserver(sys.stderr)], redirectStandardIO=False)
    print(READY_LINE, flush=True)
    # Run until a signal stops the reactor; react() then exits with status 0.
    await Deferred()
