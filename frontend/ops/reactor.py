"""The reactor a feproxy process runs on, as one type, and the entry points' way to get it.

Twisted types its global reactor as a private make-believe interface that
lacks threads, sockets handed over by a parent and UNIX listeners, all of
which ``feproxy serve`` uses.  :class:`IServeReactor` names everything the
commands need; every reactor Twisted installs by default on Linux (epoll,
poll, select) provides each of its bases, which ``tests/test_operations.py``
checks against the real one.  Only entry points call :func:`global_reactor`;
everything below them is handed its reactor (or the one interface of it
that it needs).
"""

from __future__ import annotations

from typing import cast

from twisted.internet.interfaces import (
    IReactorFDSet,
    IReactorProcess,
    IReactorSocket,
    IReactorTCP,
    IReactorThreads,
    IReactorUNIX,
)

from frontend.directory.interfaces import IDirectoryReactor
from frontend.wire.interfaces import IBackendReactor

__all__ = ["IServeReactor", "global_reactor"]


class IServeReactor(
    IDirectoryReactor,  # IReactorCore, IReactorTime, IReactorFromThreads
    IBackendReactor,  # IReactorTCP, IReactorTime
    IReactorThreads,
    IReactorTCP,
    IReactorUNIX,
    IReactorSocket,
    IReactorFDSet,
    IReactorProcess,
):
    """What a feproxy command asks of its reactor."""


def global_reactor() -> IServeReactor:
    """The global reactor (installing the default one on first use)."""
    from twisted.internet import reactor  # noqa: PLC0415 - importing it installs it: entry points only

    # The cast names the interfaces the real reactor provides (see the module docstring).
    return cast("IServeReactor", reactor)
