"""What a live run drives, and how it changes the replica set mid-run.

:class:`StackTarget` is the stack the load test started itself
(:class:`~frontend.loadtest.stack.LiveStack`): it knows the users' tokens
and the replica list, and supports every change:

- ``add``: a public store for the spare server is added to the directory,
  then the front end is sent SIGHUP (its caches empty: the operator's way to
  make it see the new replica list now rather than after the cache TTL);
- ``remove``: the victim's store is deleted, then SIGHUP;
- ``fail``: the farm's control API makes the victim refuse connections (a
  failure: the directory does not change).

:class:`RemoteTarget` is a front end that already runs (``--target URL
--users-file FILE``): the replica list is learnt from the answers, and only
``fail`` is supported, when the farm's control API is given (``--control
URL``); the fault is lifted again at the end of the run.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from http import HTTPStatus
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, cast
from urllib.parse import quote, urlsplit

import treq
from twisted.web.client import Agent

from frontend.loadtest.driver import Credential
from frontend.loadtest.scenario import Change
from frontend.loadtest.stack import LiveStack, StackError

if TYPE_CHECKING:
    from treq._types import _ITreqReactor

    from frontend.ops.reactor import IServeReactor

__all__ = [
    "RemoteTarget",
    "StackTarget",
    "Target",
    "TargetError",
    "check_loopback_url",
    "read_users_file",
    "set_fault",
]


class TargetError(RuntimeError):
    """The target cannot do what was asked (an unsupported change, a control call failed)."""


class Target(Protocol):
    """A front end to drive."""

    url: str
    users: Sequence[Credential]
    policy: str | None  # the hash policy, when known
    replicas: tuple[str, ...] | None  # the replica list, when known
    spare: str | None  # the server an ``add`` gives a replica to
    changes: frozenset[str]  # the change scenarios supported

    async def apply(self, reactor: IServeReactor, change: Change) -> None:
        """Make ``change`` and return once the front end is subject to it."""
        ...

    async def undo(self, reactor: IServeReactor) -> None:
        """Undo what :meth:`apply` did to shared infrastructure (if anything)."""
        ...


def check_loopback_url(url: str, option: str) -> str:
    """``url`` if it is ``http://`` on a loopback address, else ValueError."""
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        raise ValueError(f"{option}: expected an http:// URL, got {url!r}")
    host = parts.hostname
    if host != "localhost":
        try:
            loopback = ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = False
        if not loopback:
            raise ValueError(f"{option}: the load test only drives loopback addresses, got {host}")
    return url


def read_users_file(path: str, limit: int) -> list[Credential]:
    """The ``login:password`` lines of ``path`` (blank and ``#`` lines skipped)."""
    users: list[Credential] = []
    with Path(path).open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            text = line.rstrip("\r\n")
            if not text.strip() or text.lstrip().startswith("#"):
                continue
            login, sep, password = text.partition(":")
            if not sep or not login or not password:
                raise ValueError(f"{path}:{number}: expected login:password")
            users.append(Credential(login, password))
            if len(users) > limit:
                raise ValueError(f"{path}: more than {limit} users")
    if not users:
        raise ValueError(f"{path}: no login:password line")
    return users


async def set_fault(reactor: IServeReactor, control_url: str, server: str, mode: str) -> None:
    """``PUT /faults/<server>`` on a stub farm's control API; returns once in force."""
    client = treq.client.HTTPClient(Agent(reactor, connectTimeout=10))
    url = f"{control_url.rstrip('/')}/faults/{quote(server, safe='')}"
    try:
        response = await client.put(
            url, json={"mode": mode}, timeout=15, reactor=cast("_ITreqReactor", reactor)
        )
        body = await treq.content(response)
    except Exception as error:  # connection refused, timeout...: say which call failed
        raise TargetError(f"PUT {url}: {type(error).__name__}") from error
    if response.code != HTTPStatus.OK:
        detail = body.decode("utf-8", "replace").strip()
        raise TargetError(f"PUT {url}: {response.code} {detail}")


class StackTarget:
    """The stack the load test started; supports add, remove and fail."""

    changes = frozenset({"add", "remove", "fail"})

    def __init__(self, stack: LiveStack) -> None:
        self._stack = stack
        self.url = stack.url
        self.users: Sequence[Credential] = [
            Credential(u.login, u.password, u.token) for u in stack.users
        ]
        self.policy: str | None = stack.plan.policy
        self.replicas: tuple[str, ...] | None = stack.replicas
        self.spare: str | None = stack.spares[0] if stack.spares else None

    async def apply(self, reactor: IServeReactor, change: Change) -> None:
        """Make the change; see the module docstring."""
        try:
            if change.kind == "add":
                await self._stack.add_replica(reactor, change.server)
                await self._stack.reload(reactor)
            elif change.kind == "remove":
                await self._stack.remove_replica(reactor, change.server)
                await self._stack.reload(reactor)
            else:
                await set_fault(reactor, self._stack.control_url, change.server, "refuse")
        except StackError as error:
            raise TargetError(str(error)) from None

    async def undo(self, reactor: IServeReactor) -> None:
        """Nothing: the whole stack is thrown away."""


class RemoteTarget:
    """A front end that runs already; ``fail`` only, through ``control_url``."""

    policy: str | None = None
    replicas: tuple[str, ...] | None = None
    spare: str | None = None

    def __init__(self, url: str, users: Sequence[Credential], control_url: str | None) -> None:
        self.url = url
        self.users: Sequence[Credential] = list(users)
        self._control = control_url
        self.changes = frozenset({"fail"}) if control_url else frozenset()
        self._failed: str | None = None

    async def apply(self, reactor: IServeReactor, change: Change) -> None:
        """Make ``change.server`` refuse connections through the farm's control API."""
        if change.kind not in self.changes or self._control is None:
            raise TargetError(f"--change {change.kind} is not supported with --target")
        self._failed = change.server
        await set_fault(reactor, self._control, change.server, "refuse")

    async def undo(self, reactor: IServeReactor) -> None:
        """Let the failed server accept connections again."""
        if self._failed is not None and self._control is not None:
            server, self._failed = self._failed, None
            await set_fault(reactor, self._control, server, "none")
