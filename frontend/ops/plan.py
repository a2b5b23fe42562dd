"""``feproxy plan``: who moves, before it happens (the command line).

    feproxy plan --config FILE --tree NAME --add SERVER [--add ...] [--remove SERVER ...]
    feproxy plan --config FILE --store STORE --public-store PUBLIC_STORE
    ... [--format table|csv|json]

Reads the directory of FILE with the front end's own client, places every
user the front end routes before and after the change
(:mod:`frontend.ops.planning`) and prints who moves
(:mod:`frontend.ops.plan_output`).  Nothing is written to the directory.

Exit status: 0 the plan was printed, 1 it could not be made (invalid
configuration, unknown tree or store, a server that is not a replica for
``--remove`` or already one for ``--add``, directory unreachable), 2 bad
arguments.  Errors are one line on standard error, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING, Final, TextIO

if TYPE_CHECKING:
    from frontend.config import Config, DirectorySettings
    from frontend.ops.planning import Plan, ReplicaChange, StoreChange
    from frontend.ops.reactor import IServeReactor

# Parsing feproxy's command line imports only the standard library (see
# frontend.ops.cli): what the command runs is imported when it runs.

__all__ = ["EXIT_FAILED", "EXIT_USAGE", "FORMATS", "add_parser", "run"]

EXIT_FAILED: Final = 1
EXIT_USAGE: Final = 2

#: The output formats (--format).
FORMATS: Final = ("table", "csv", "json")

#: The longest a plan may take (listing a large directory included).
TIME_LIMIT: Final = 600.0

_EPILOG = """\
examples:
  feproxy plan --config conf/feproxy.toml --tree Apps --add ex1.example.com
  feproxy plan --config conf/feproxy.toml --tree Apps --remove EX4 --format csv
  feproxy plan --config conf/feproxy.toml --store MB1 --public-store PF2 --format json

A SERVER is a host name or a server's name (cn) or DN; a tree, store or
public store is its name (cn) or DN.  --tree default is the tree of the
vdirs whose tree is "default": there, users go first to the public store of
their mailbox store.  Nothing is written to the directory.
"""


def add_parser(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
) -> argparse.ArgumentParser:
    """Add ``plan`` to ``feproxy``'s subparsers."""
    p = subparsers.add_parser(
        "plan",
        help="who moves to another server when a replica is added or removed",
        description="List the users whose public-folder server changes when a replica\n"
        "is added to or removed from a tree, or when a mailbox store is given\n"
        "another public store, before the change is made.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--config", required=True, help="the front end's configuration file (TOML)")
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--tree", metavar="NAME", help="a public folder tree, or 'default'")
    what.add_argument("--store", metavar="STORE", help="a mailbox store")
    p.add_argument(
        "--add", action="append", default=[], metavar="SERVER", help="give SERVER a replica"
    )
    p.add_argument(
        "--remove", action="append", default=[], metavar="SERVER", help="take SERVER's replica"
    )
    p.add_argument(
        "--public-store", metavar="PUBLIC_STORE", help="the public store --store is given"
    )
    p.add_argument("--format", choices=FORMATS, default="table", help="output (table)")
    return p


def _error(message: str, err: TextIO) -> None:
    err.write(f"feproxy plan: {message}\n")


def _change(args: argparse.Namespace) -> ReplicaChange | StoreChange:
    """The change asked for; ValueError for options that do not go together."""
    from frontend.ops.planning import ReplicaChange, StoreChange

    if args.tree is not None:
        if args.public_store is not None:
            raise ValueError("--public-store goes with --store, not --tree")
        if not args.add and not args.remove:
            raise ValueError("--tree needs at least one --add SERVER or --remove SERVER")
        return ReplicaChange(args.tree, tuple(args.add), tuple(args.remove))
    if args.add or args.remove:
        raise ValueError("--add and --remove go with --tree, not --store")
    if args.public_store is None:
        raise ValueError("--store needs --public-store PUBLIC_STORE")
    return StoreChange(args.store, args.public_store)


def _settings(config: Config) -> DirectorySettings:
    from frontend.ops.planning import PlanError

    if config.directory is None:
        raise PlanError(f"{config.source} has no [directory] table: there is nobody to plan for")
    return config.directory


async def _plan(
    reactor: IServeReactor, config: Config, change: ReplicaChange | StoreChange
) -> Plan:
    from frontend.directory.inventory import LdapInventory
    from frontend.ops.planning import make_plan

    directory = LdapInventory(_settings(config), reactor)
    directory.start()
    try:
        return await make_plan(directory, config, change)
    finally:
        await directory.stop()


def _render(plan: Plan, output: str) -> str:
    from frontend.ops.plan_output import plan_csv, plan_json, plan_table

    if output == "json":
        return json.dumps(plan_json(plan), indent=2) + "\n"
    if output == "csv":
        return plan_csv(plan)
    return plan_table(plan)


def run(
    args: argparse.Namespace,
    out: TextIO | None = None,
    err: TextIO | None = None,
    reactor: IServeReactor | None = None,
) -> int:
    """Run the parsed ``feproxy plan ...`` command; the exit status."""
    from frontend.errors import DirectoryUnavailable
    from frontend.loadtest.runner import Interrupted, TimeLimitExceeded, run_in_reactor
    from frontend.ops.configfile import load_or_report
    from frontend.ops.planning import PlanError

    out = sys.stdout if out is None else out
    err = sys.stderr if err is None else err
    try:
        change = _change(args)
    except ValueError as error:
        _error(str(error), err)
        return EXIT_USAGE
    config = load_or_report(args.config)
    if config is None:
        return EXIT_FAILED
    try:
        plan = run_in_reactor(lambda r: _plan(r, config, change), TIME_LIMIT, reactor)
    except PlanError as error:
        _error(str(error), err)
        return EXIT_FAILED
    except DirectoryUnavailable as error:
        url = config.directory.url if config.directory is not None else "-"
        _error(f"directory unreachable: {error.detail or url}", err)
        return EXIT_FAILED
    except (TimeLimitExceeded, Interrupted) as error:
        _error(str(error), err)
        return EXIT_FAILED
    out.write(_render(plan, args.format))
    out.flush()
    return 0
