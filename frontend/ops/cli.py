"""``feproxy``: the command line (serve, check-config, demo, loadtest, plan, --version).

Only the standard library is imported at the top: ``feproxy --version`` (and
the parsing of any command line) loads nothing else, and each command imports
what it runs.
"""

from __future__ import annotations

import argparse
import gc
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

from frontend import __version__

if TYPE_CHECKING:
    from frontend.ops.logs import LogFile
    from frontend.ops.notify import Notifier
    from frontend.ops.reactor import IServeReactor
    from frontend.ops.service import FrontEndService

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="feproxy", description="An HTTP front-end server for mail and public-folder back ends."
    )
    p.add_argument("--version", action="version", version=f"feproxy {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the front end")
    serve.add_argument("--config", required=True, help="configuration file (TOML)")
    serve.add_argument("--log-level", default="info", choices=["debug", "info", "warn", "error"])
    serve.add_argument("--log-json", action="store_true", help="log JSON lines")
    serve.add_argument(
        "--access-log", default="-", help="access log file ('-': stdout; 'off': no access log)"
    )
    serve.add_argument(
        "--error-log", default="-", help="log file ('-': stderr); SIGUSR1 reopens both logs"
    )
    serve.add_argument(
        "--workers", type=int, default=1, help="processes sharing the listening sockets"
    )
    # Internal: how a --workers master hands its sockets to a worker.
    serve.add_argument("--inherit", action="append", default=[], help=argparse.SUPPRESS)
    serve.add_argument("--worker-index", type=int, default=0, help=argparse.SUPPRESS)
    serve.add_argument("--notify-fd", type=int, default=None, help=argparse.SUPPRESS)

    check = sub.add_parser("check-config", help="validate a configuration file")
    check.add_argument("file")

    demo = sub.add_parser("demo", help="run directory, stub farm and front end together")
    conf = Path(__file__).resolve().parents[2] / "conf"
    demo.add_argument("--config", default=str(conf / "feproxy.toml"))
    demo.add_argument("--topology", default=str(conf / "topology.toml"))
    demo.add_argument("--ldif", default=str(conf / "directory.ldif"))
    from frontend.loadtest.cli import add_parser as add_loadtest

    add_loadtest(sub)
    from frontend.ops.plan import add_parser as add_plan

    add_plan(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "check-config":
        return _check(args.file)
    if args.command == "serve":
        return _serve(args)
    if args.command == "loadtest":
        from frontend.loadtest.cli import run

        return run(args)
    if args.command == "plan":
        from frontend.ops.plan import run as run_plan

        return run_plan(args)
    from frontend.ops.demo import run_demo

    return run_demo(args)


def _check(path: str) -> int:
    from frontend.ops.configfile import load_or_report

    if load_or_report(path) is None:
        return 1
    print(f"{path}: OK")
    return 0


def _serve(args: argparse.Namespace) -> int:
    from frontend.ops.configfile import load_or_report
    from frontend.ops.logs import start_logging
    from frontend.ops.notify import Notifier, notify_reload
    from frontend.ops.reactor import global_reactor
    from frontend.ops.service import FrontEndService
    from frontend.proxy import NO_ACCESS_LOG

    reactor = global_reactor()

    config = load_or_report(args.config)
    if config is None:
        return 1
    if args.workers > 1:
        from frontend.ops.workers import run_master

        return run_master(args, config)
    inherited = {}
    for item in args.inherit:
        fd, _, desc = item.partition("=")
        inherited[desc] = int(fd)
    try:
        access, errors = _log_files(args)
    except OSError as e:
        print(f"feproxy: cannot open a log file: {e}", file=sys.stderr)
        return 1
    logging = start_logging(
        access=access, errors=errors, level=args.log_level, json=args.log_json, clock=reactor
    )
    reactor.addSystemEventTrigger("after", "shutdown", logging.flush)
    service = FrontEndService(
        config,
        reactor,
        config_path=args.config,
        inherited=inherited,
        admin=args.worker_index == 0,
        access=NO_ACCESS_LOG if args.access_log == "off" else logging.access,
    )
    exit_code: list[int] = []
    pid = os.getpid()
    notifier = (
        Notifier.from_environ(os.environ, pid=pid)
        if args.notify_fd is None  # a --workers worker tells its master instead
        else Notifier.for_channel(args.notify_fd, os.environ, pid=pid)
    )

    def on_hup(_signum: int, _frame: FrameType | None) -> None:
        reactor.callFromThread(notify_reload, notifier, service.reload, args.config)

    def on_usr1(_signum: int, _frame: FrameType | None) -> None:
        reactor.callFromThread(logging.reopen)  # log rotation, as nginx does

    signal.signal(signal.SIGHUP, on_hup)
    signal.signal(signal.SIGUSR1, on_usr1)
    reactor.callWhenRunning(_start, service, reactor, exit_code, notifier)
    reactor.run()
    return exit_code[0] if exit_code else 0


def _log_files(args: argparse.Namespace) -> tuple[LogFile | None, LogFile | None]:
    """The access log and the error log files (None: stdout, stderr)."""
    from frontend.ops.logs import LogFile, open_error_log

    access = None
    if args.access_log == "off":
        access = LogFile.open(os.devnull)
    elif args.access_log != "-":
        access = LogFile.open(args.access_log)
    return access, open_error_log(args.error_log)


def _start(
    service: FrontEndService, reactor: IServeReactor, exit_code: list[int], notifier: Notifier
) -> None:
    from twisted.logger import Logger

    from frontend.ops.signals import stop_on_signals
    from frontend.ops.workers import RELAYED

    # In place of the handlers the reactor has just installed (see
    # frontend.ops.signals): a stop signal stops the process once.
    stop_on_signals(reactor)
    log = Logger()
    try:
        service.startService()
    except Exception as e:  # a listener that cannot listen: say so and stop
        log.critical("cannot start: {e}", e=e)
        exit_code.append(1)
        reactor.stop()
        return
    reactor.addSystemEventTrigger("before", "shutdown", notifier.stopping)
    reactor.addSystemEventTrigger("before", "shutdown", service.stopService)
    # A --workers master starts its workers with these signals blocked; their
    # handlers are in place now.
    signal.pthread_sigmask(signal.SIG_UNBLOCK, RELAYED)
    # What exists now (modules, configuration, listeners) lives as long as the
    # process: keep it out of the cyclic collector's full passes, which took
    # about 11 ms per 64,000 objects and showed in the latency tail.
    gc.collect()
    gc.freeze()
    log.info(
        "feproxy {name} serving on {listen}",
        name=service.config.frontend.name,
        listen=", ".join(service.config.frontend.listen),
    )
    fe = service.config.frontend
    notifier.started(f"feproxy {fe.name} serving on {', '.join(fe.listen)}")
    notifier.start_watchdog(reactor)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
