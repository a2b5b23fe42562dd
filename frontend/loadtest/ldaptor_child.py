"""``python -m frontend.loadtest.ldaptor_child --ldif FILE --port N``.

Serves an LDIF file from ldaptor's in-memory directory
(:mod:`frontend.ops.demo_directory`) on ``127.0.0.1:N`` in a process of its own,
for the live load test when slapd is not installed.  Prints
:data:`READY_LINE` once it listens; runs until SIGTERM or SIGINT.  It has no
access control: the service account may also add and delete entries.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from frontend.ops.reactor import IServeReactor

__all__ = ["READY_LINE", "main"]

READY_LINE: Final = "ldaptor directory ready"


async def _serve(reactor: IServeReactor, ldif: str, port: int) -> None:
    from twisted.internet.defer import Deferred

    from frontend.ops.demo_directory import start_demo_directory

    directory = await start_demo_directory(reactor, ldif, port=port)
    reactor.addSystemEventTrigger("before", "shutdown", directory.stop)
    print(READY_LINE, flush=True)
    await Deferred()  # until a signal stops the reactor


def main(argv: Sequence[str] | None = None) -> None:
    """Parse the arguments and serve until stopped."""
    parser = argparse.ArgumentParser(prog="python -m frontend.loadtest.ldaptor_child")
    parser.add_argument("--ldif", required=True, help="the LDIF file to serve")
    parser.add_argument("--port", required=True, type=int, help="port on 127.0.0.1")
    args = parser.parse_args(argv)
    from twisted.internet.defer import ensureDeferred
    from twisted.internet.task import react

    react(lambda reactor: ensureDeferred(_serve(reactor, args.ldif, args.port)))


if __name__ == "__main__":  # pragma: no cover
    main()
