"""``feproxy loadtest offline|live``: how users spread over replicas, and how many move.

``feproxy`` wires this in with :func:`add_parser` and :func:`run`;
``python -m frontend.loadtest`` runs it on its own (:func:`main`).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING, Final

from frontend.loadtest.scenario import CHANGES, MAX_REPLICAS, MAX_USERS

if TYPE_CHECKING:
    from frontend.loadtest.live import LivePlan
    from frontend.loadtest.report import Report

__all__ = ["EXIT_FAILED", "EXIT_PROBLEMS", "EXIT_USAGE", "add_parser", "main", "run"]

EXIT_FAILED: Final = 1  # could not run: the stack did not start, the target is unusable
EXIT_USAGE: Final = 2  # bad arguments
EXIT_PROBLEMS: Final = 3  # ran, but found failed requests, stickiness violations or mismatches
EXIT_INTERRUPTED: Final = 130

MAX_LIVE_USERS: Final = 100_000
MAX_REQUESTS_PER_USER: Final = 100
MAX_CONCURRENCY: Final = 1024
MAX_SECONDS: Final = 86_400.0  # a day

_EPILOG = """\
exit status: 0 done; 1 could not run (stack or target failed, time limit);
2 bad arguments; 3 done, but requests failed, a user was seen on two servers
while nothing changed, or (own stack) a user was routed unlike frontend.routing.hashing
predicts; 130 interrupted.
"""

_OFFLINE_EPILOG = """\
Replicas are pf01.example.com, pf02.example.com, ...  add: pf<n+1> gets a
replica (ideal move 1/(n+1)); remove: the last replica goes (ideal 1/n);
fail: the last replica is unavailable (ideal: exactly its users).
"""

_LIVE_EPILOG = """\
Without --target, the load test starts on loopback: a directory with generated
users (slapd when installed, else ldaptor's in-memory directory), a stub farm
with one server per replica plus a spare (127.0.0.2, ...), and `feproxy serve`.
The change is made between two rounds of requests (after round
round(at x requests-per-user), at least 1 and at most requests-per-user - 1):
add: a store for the spare server is added to the directory, then SIGHUP;
remove: the last replica's store is deleted, then SIGHUP;
fail: the last replica refuses connections (farm fault).
With --target URL --users-file FILE (lines login:password) a running front end
is driven instead: only --change fail is supported, and only with --control URL
(the farm's control API); the fault is lifted at the end.
Only loopback addresses are driven.
"""


def _int_in(low: int, high: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text.replace("_", ""))
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"expected {low}..{high:,}, got {value:,}")
        return value

    return parse


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"expected 0..1, got {value}")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds, got {text!r}") from None
    if not 0.0 < value <= MAX_SECONDS:
        raise argparse.ArgumentTypeError(f"expected 0..86400 seconds, got {value}")
    return value


def _add_modes(parser: argparse.ArgumentParser) -> None:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--seed", type=_int_in(0, 2**63), default=1, help="random seed (1)")
    common.add_argument("--json", action="store_true", help="print the report as JSON")
    common.add_argument("--plot", metavar="FILE.png", help="draw users per server (matplotlib)")
    common.add_argument("--quiet", action="store_true", help="no progress bar")
    common.add_argument("--change", choices=CHANGES, help="change the replicas midway")

    modes = parser.add_subparsers(dest="loadtest_mode", required=True, metavar="MODE")
    offline = modes.add_parser(
        "offline",
        parents=[common],
        help="hash synthetic users, no network",
        description="Place synthetic users (seeded 16-byte tokens) with the hash policy.",
        epilog=_OFFLINE_EPILOG + "\n" + _EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    offline.add_argument(
        "--users", type=_int_in(1, MAX_USERS), default=100_000, help="synthetic users (100000)"
    )
    offline.add_argument("--replicas", type=_int_in(2, 1000), default=4, help="replicas (4)")
    offline.add_argument(
        "--policy",
        choices=("rendezvous", "exchange", "both"),
        default="rendezvous",
        help="hash policy; both: side by side (rendezvous)",
    )

    live = modes.add_parser(
        "live",
        parents=[common],
        help="drive users through a front end",
        description="Drive users through feproxy and see where the back ends say they land.",
        epilog=_LIVE_EPILOG + "\n" + _EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    live.add_argument(
        "--users", type=_int_in(1, MAX_LIVE_USERS), default=2000, help="generated users (2000)"
    )
    live.add_argument(
        "--requests-per-user",
        type=_int_in(1, MAX_REQUESTS_PER_USER),
        default=3,
        metavar="N",
        help="rounds: each user's GETs (3)",
    )
    live.add_argument(
        "--replicas", type=_int_in(2, MAX_REPLICAS), default=4, help="replica servers (4)"
    )
    live.add_argument(
        "--policy",
        choices=("rendezvous", "exchange"),
        default="rendezvous",
        help="the front end's hash_policy (rendezvous)",
    )
    live.add_argument("--at", type=_fraction, default=0.5, help="when to change (0..1; 0.5)")
    live.add_argument(
        "--concurrency",
        type=_int_in(1, MAX_CONCURRENCY),
        default=64,
        help="requests in flight at most (64)",
    )
    live.add_argument(
        "--request-timeout", type=_seconds, default=30.0, metavar="SECONDS", help="per request (30)"
    )
    live.add_argument(
        "--time-limit",
        type=_seconds,
        default=900.0,
        metavar="SECONDS",
        help="stop the requests and the change after this long (900); starting the stack "
        "has its own bounds",
    )
    live.add_argument(
        "--directory",
        choices=("auto", "slapd", "ldaptor"),
        default="auto",
        help="auto: slapd when installed, else ldaptor (slow) with a warning",
    )
    live.add_argument("--workdir", metavar="DIR", help="keep generated files and logs here")
    live.add_argument("--target", metavar="URL", help="drive this running front end's folder URL")
    live.add_argument("--users-file", metavar="FILE", help="login:password lines (--target)")
    live.add_argument("--control", metavar="URL", help="the farm's control API (--target)")


def add_parser(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
) -> argparse.ArgumentParser:
    """Add ``loadtest`` (with modes ``offline`` and ``live``) to ``feproxy``'s subparsers."""
    parser = subparsers.add_parser(
        "loadtest",
        help="how users spread over replicas, and how many move on a change",
        description=__doc__,
        epilog=_EPILOG,
    )
    _add_modes(parser)
    return parser


def _error(message: str) -> None:
    print(f"feproxy loadtest: {message}", file=sys.stderr)


def _emit(report: Report, args: argparse.Namespace) -> None:
    if args.json:
        print(json.dumps(report.to_json(), indent=2))
    else:
        from frontend.loadtest.table import render

        sys.stdout.write(render(report))
    if args.plot:
        from frontend.loadtest.plot import write_plot

        write_plot(report, args.plot)
        if not args.json:
            print(f"plot: {args.plot}")
    sys.stdout.flush()


def _check_plot(args: argparse.Namespace) -> None:
    """Fail before the run, not after it, when --plot cannot work."""
    if args.plot:
        from frontend.loadtest.plot import require_matplotlib

        require_matplotlib()


def _offline(args: argparse.Namespace) -> int:
    from frontend.loadtest.offline import OfflinePlan, simulate
    from frontend.loadtest.progress import progress_bar
    from frontend.loadtest.report import Report

    policies = ("rendezvous", "exchange") if args.policy == "both" else (args.policy,)
    bar = progress_bar(args.users * len(policies), "users", enabled=not args.quiet)
    try:
        runs = tuple(
            simulate(OfflinePlan(args.users, args.replicas, p, args.change, args.seed), bar)
            for p in policies
        )
    finally:
        bar.close()
    parameters = {
        "users": args.users,
        "replicas": args.replicas,
        "policy": args.policy,
        "change": args.change,
        "seed": args.seed,
    }
    _emit(Report("offline", parameters, runs), args)
    return 0


def _live_plan(args: argparse.Namespace) -> LivePlan:
    from frontend.loadtest.live import LivePlan

    return LivePlan(
        requests_per_user=args.requests_per_user,
        concurrency=args.concurrency,
        change=args.change,
        at=args.at,
        seed=args.seed,
        request_timeout=args.request_timeout,
    )


def _check_target_args(args: argparse.Namespace) -> None:
    from frontend.loadtest.targets import check_loopback_url

    if args.target is None:
        for option in ("users_file", "control"):
            if getattr(args, option) is not None:
                raise ValueError(f"--{option.replace('_', '-')} goes with --target")
        return
    if args.users_file is None:
        raise ValueError("--target needs --users-file FILE (lines login:password)")
    check_loopback_url(args.target, "--target")
    if args.control is not None:
        check_loopback_url(args.control, "--control")
    if args.change is not None and (args.change != "fail" or args.control is None):
        raise ValueError(
            "with --target only --change fail is supported, and it needs --control URL "
            "(add and remove need the directory and the front end's process)"
        )


def _live(args: argparse.Namespace) -> int:
    from frontend.loadtest.live import change_round, run_live
    from frontend.loadtest.progress import progress_bar
    from frontend.loadtest.report import Report
    from frontend.loadtest.runner import run_in_reactor
    from frontend.loadtest.stack import LiveStack, StackPlan
    from frontend.loadtest.targets import RemoteTarget, StackTarget, Target, read_users_file

    plan = _live_plan(args)
    _check_target_args(args)
    notes: list[str] = []

    def warn(message: str) -> None:
        notes.append(message)
        _error(f"warning: {message}")

    parameters: dict[str, object] = {
        "users": args.users,
        "requests_per_user": args.requests_per_user,
        "replicas": args.replicas,
        "policy": args.policy,
        "change": args.change,
        "at": args.at,
        "change_after_round": None,
        "concurrency": args.concurrency,
        "seed": args.seed,
        "directory": None,
        "target": args.target,
    }
    if args.change is not None:
        parameters["change_after_round"] = change_round(args.requests_per_user, args.at)
    with ExitStack() as resources:
        target: Target
        if args.target is not None:
            users = read_users_file(args.users_file, MAX_LIVE_USERS)
            target = RemoteTarget(args.target, users, args.control)
            parameters.update(users=len(users), replicas=None, policy=None)
        else:
            if args.workdir is not None:
                workdir = Path(args.workdir)
                if workdir.exists() and any(workdir.iterdir()):
                    raise ValueError(f"--workdir {workdir}: not empty (the run writes there)")
                workdir.mkdir(parents=True, exist_ok=True)
            else:
                workdir = Path(resources.enter_context(tempfile.TemporaryDirectory("-loadtest")))
            stack_plan = StackPlan(
                args.users, args.replicas, args.policy, args.seed, args.directory
            )
            stack = resources.enter_context(LiveStack.start(stack_plan, workdir, warn))
            parameters["directory"] = stack.directory_kind
            target = StackTarget(stack)
        bar = progress_bar(
            len(target.users) * plan.requests_per_user, "req", enabled=not args.quiet
        )
        resources.callback(bar.close)
        result = run_in_reactor(lambda r: run_live(r, target, plan, bar), args.time_limit)
    report = Report("live", parameters, (result,), tuple(notes))
    _emit(report, args)
    traffic = result.traffic
    if traffic is None:  # run_live always measures traffic
        raise RuntimeError("the live run reported no traffic")
    problems = (
        traffic.failed
        + traffic.stickiness_violations_before
        + (traffic.stickiness_violations_after or 0)
        + (traffic.prediction_mismatches or 0)
    )
    return EXIT_PROBLEMS if problems else 0


def run(args: argparse.Namespace) -> int:
    """Run the parsed ``feproxy loadtest ...`` command; the exit status."""
    from frontend.loadtest.plot import PlotUnavailable
    from frontend.loadtest.procs import ChildError
    from frontend.loadtest.runner import Interrupted, TimeLimitExceeded
    from frontend.loadtest.stack import StackError
    from frontend.loadtest.targets import TargetError

    try:
        _check_plot(args)
        if args.loadtest_mode == "offline":
            return _offline(args)
        return _live(args)
    except ValueError as error:
        _error(str(error))
        return EXIT_USAGE
    except PlotUnavailable as error:
        _error(str(error))
        return EXIT_FAILED
    except (StackError, TargetError, ChildError, TimeLimitExceeded, OSError) as error:
        _error(str(error))
        return EXIT_FAILED
    except (Interrupted, KeyboardInterrupt):
        _error("interrupted")
        return EXIT_INTERRUPTED


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m frontend.loadtest offline|live ...``."""
    parser = argparse.ArgumentParser(prog="python -m frontend.loadtest", description=__doc__)
    _add_modes(parser)
    return run(parser.parse_args(argv))
