"""The whole stack of a live load test, started on loopback.

:meth:`LiveStack.start` generates and starts, each as a child process with
its output in the work directory:

- a directory holding the generated users and servers
  (:mod:`frontend.loadtest.ldif`): slapd when it is installed, else ldaptor's
  in-memory directory (slow with many users; the caller is warned);
- the stub farm (``python -m backend_stub``) with one server per replica and
  one spare, each on its own address ``127.0.0.2``, ``127.0.0.3``, ..., all
  holding the folder ``/apps/Load``;
- ``feproxy serve`` with authentication on, the cache TTLs at their defaults,
  and the general-purpose tree ``Apps`` under ``/apps``.

Starting and stopping block (they run before and after the reactor).  The
changes made while the reactor runs (:meth:`LiveStack.add_replica`,
:meth:`LiveStack.remove_replica`, :meth:`LiveStack.reload`) keep blocking
work (ldap3, reading the log) in the reactor's thread pool.
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Final

from twisted.internet.task import deferLater
from twisted.internet.threads import deferToThreadPool

from frontend.loadtest.ldaptor_child import READY_LINE as LDAPTOR_READY
from frontend.loadtest.ldif import (
    TREE,
    GeneratedUser,
    directory_ldif,
    generate_users,
    store_attributes,
    store_dn,
)
from frontend.loadtest.procs import Child, ChildError, free_port
from frontend.loadtest.scenario import MAX_REPLICAS, MIN_REPLICAS, server_names
from frontend.loadtest.slapd import (
    BASE_DN,
    CONFIG_DN,
    REPO,
    ROOT_DN,
    ROOT_PASSWORD,
    SERVICE_DN,
    SERVICE_PASSWORD,
    Slapd,
    SlapdError,
    find_slapd,
)
from frontend.loadtest.tomlwrite import to_toml

if TYPE_CHECKING:
    import ldap3

    from frontend.ops.reactor import IServeReactor

__all__ = [
    "FOLDER",
    "MAX_REPLICAS",
    "LiveStack",
    "StackError",
    "StackPlan",
]

#: The folder every user asks for (under the ``/apps`` virtual directory).
FOLDER: Final = "/apps/Load/"

_RELOADED: Final = "configuration reloaded from"
_NOT_RELOADED: Final = "configuration not reloaded"
_FARM_READY: Final = "backend-stub ready"
_INDEXES: Final = ("objectClass", "sAMAccountName", "userPrincipalName")


class StackError(RuntimeError):
    """A part of the stack did not start, or a change could not be made."""


@dataclass(frozen=True)
class StackPlan:
    """What to start."""

    users: int
    replicas: int
    policy: str = "rendezvous"
    seed: int = 1
    directory: str = "auto"  # "auto", "slapd" or "ldaptor"
    spares: int = 1

    def __post_init__(self) -> None:
        if not MIN_REPLICAS <= self.replicas <= MAX_REPLICAS:
            raise ValueError(f"replicas must be in 2..{MAX_REPLICAS}, got {self.replicas}")
        if self.directory not in ("auto", "slapd", "ldaptor"):
            raise ValueError(f"directory must be auto, slapd or ldaptor, got {self.directory!r}")


class _Directory:
    """The running directory: slapd, or ldaptor in a child process."""

    def __init__(
        self, kind: str, url: str, admin: tuple[str, str], stop: Callable[[], object]
    ) -> None:
        self.kind = kind
        self.url = url
        self.admin_dn, self.admin_password = admin
        self.stop = stop


def _start_directory(
    plan: StackPlan, ldif: Path, workdir: Path, warn: Callable[[str], None]
) -> _Directory:
    use_slapd = plan.directory == "slapd" or (plan.directory == "auto" and find_slapd())
    if use_slapd:
        slapd = Slapd(workdir / "slapd", ldif=ldif, indexes=_INDEXES)
        slapd.workdir.mkdir()
        try:
            slapd.start()
        except SlapdError as error:
            slapd.stop()
            raise StackError(f"slapd: {error}") from None
        return _Directory("slapd", slapd.url, (ROOT_DN, ROOT_PASSWORD), slapd.stop)
    if plan.directory == "auto":
        warn(
            "slapd not found (on PATH or in /usr/sbin): using ldaptor's in-memory "
            "directory, which is slow with many users; scripts/install-slapd installs slapd"
        )
    port = free_port()
    child = Child(
        "ldaptor",
        [
            sys.executable,
            "-m",
            "frontend.loadtest.ldaptor_child",
            "--ldif",
            str(ldif),
            "--port",
            str(port),
        ],
        workdir,
        REPO,
    )
    try:
        child.wait_line(LDAPTOR_READY, timeout=30.0 + plan.users / 50)
    except ChildError as error:
        child.stop()
        raise StackError(f"{error}: {child.tail()}") from None
    url = f"ldap://127.0.0.1:{port}"
    return _Directory("ldaptor", url, (SERVICE_DN, SERVICE_PASSWORD), child.stop)


class LiveStack:
    """A started stack; see the module docstring.  Use it as a context manager."""

    def __init__(self, plan: StackPlan, workdir: Path) -> None:
        self.plan = plan
        self.workdir = workdir
        self.replicas = server_names(plan.replicas)
        self.spares = server_names(plan.spares, first=plan.replicas + 1)
        self.users: list[GeneratedUser] = generate_users(plan.users, plan.seed)
        servers = (*self.replicas, *self.spares)
        self.addresses = {name: f"127.0.0.{i}" for i, name in enumerate(servers, start=2)}
        self.farm_port = free_port(self.addresses.values())
        self.control_port = free_port(exclude={self.farm_port})
        self.front_port = free_port(exclude={self.farm_port, self.control_port})
        self.config_path = workdir / "feproxy.toml"
        self._directory: _Directory | None = None
        self._farm: Child | None = None
        self._serve: Child | None = None
        self._reloads_seen = 0

    # -- starting and stopping (blocking) --------------------------------------

    @classmethod
    def start(
        cls, plan: StackPlan, workdir: Path, warn: Callable[[str], None] = lambda _: None
    ) -> LiveStack:
        """Generate the data and start directory, farm and front end.

        Raises :class:`StackError` (with everything started so far stopped).
        """
        stack = cls(plan, workdir)
        try:
            stack._start(warn)
        except BaseException:
            stack.stop()
            raise
        return stack

    def _start(self, warn: Callable[[str], None]) -> None:
        ldif = self.workdir / "directory.ldif"
        ldif.write_text(directory_ldif(self.users, self.replicas, self.spares), encoding="utf-8")
        (self.workdir / "users.txt").write_text(
            "".join(f"{u.login}:{u.password}\n" for u in self.users), encoding="utf-8"
        )
        self._directory = _start_directory(self.plan, ldif, self.workdir, warn)
        topology = self.workdir / "topology.toml"
        topology.write_text(self._topology(), encoding="utf-8")
        self._farm = Child(
            "farm",
            [sys.executable, "-m", "backend_stub", "--topology", str(topology)],
            self.workdir,
            REPO,
        )
        self._ready(self._farm, lambda c: c.wait_line(_FARM_READY, 20.0))
        self.config_path.write_text(self._config(), encoding="utf-8")
        access = self.workdir / "access.log"
        self._serve = Child(
            "serve",
            [
                sys.executable,
                "-m",
                "frontend",
                "serve",
                "--config",
                str(self.config_path),
                "--access-log",
                str(access),
            ],
            self.workdir,
            REPO,
        )
        self._ready(self._serve, lambda c: c.wait_port("127.0.0.1", self.front_port, 20.0))

    @staticmethod
    def _ready(child: Child, wait: Callable[[Child], None]) -> None:
        try:
            wait(child)
        except ChildError as error:
            tail = child.tail()
            raise StackError(f"{error}" + (f": {tail}" if tail else "")) from None

    def stop(self) -> None:
        """Stop whatever runs: front end, farm, directory (each even if another fails)."""
        serve, farm, directory = self._serve, self._farm, self._directory
        self._serve = self._farm = self._directory = None
        try:
            if serve is not None:
                serve.stop()
        finally:
            try:
                if farm is not None:
                    farm.stop()
            finally:
                if directory is not None:
                    directory.stop()

    def __enter__(self) -> LiveStack:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- generated files --------------------------------------------------------

    def _topology(self) -> str:
        servers = [
            {"name": name, "address": address, "mailboxes": []}
            for name, address in self.addresses.items()
        ]
        folder = {
            "path": FOLDER.rstrip("/"),
            "content": "Load test folder.\n",
            "servers": list(self.addresses),
        }
        return to_toml(
            {
                "port": self.farm_port,
                "control": f"127.0.0.1:{self.control_port}",
                "servers": servers,
                "folders": [folder],
            }
        )

    def _config(self) -> str:
        if self._directory is None:
            raise StackError("the directory is not running")
        return to_toml(
            {
                "frontend": {
                    "name": "fe-loadtest.example.com",
                    "listen": [f"tcp:{self.front_port}:interface=127.0.0.1"],
                    "backend_port": self.farm_port,
                    "authenticate": True,
                    "realm": "loadtest",
                    "hash_policy": self.plan.policy,
                },
                "hosts": dict(self.addresses),
                "directory": {
                    "url": self._directory.url,
                    "bind_dn": SERVICE_DN,
                    "bind_password": SERVICE_PASSWORD,
                    "base_dn": BASE_DN,
                    "config_dn": CONFIG_DN,
                    "netbios_domain": "EXAMPLE",
                    "timeout": 5.0,
                    "pool_size": 4,
                },
                "vdirs": [{"path": "/apps", "kind": "public", "tree": TREE}],
            }
        )

    # -- what the load test needs to know --------------------------------------

    @property
    def directory_kind(self) -> str:
        """``slapd`` or ``ldaptor``."""
        return self._directory.kind if self._directory is not None else "stopped"

    @property
    def url(self) -> str:
        """The URL of the folder every user asks for."""
        return f"http://127.0.0.1:{self.front_port}{FOLDER}"

    @property
    def control_url(self) -> str:
        """The farm's control API."""
        return f"http://127.0.0.1:{self.control_port}"

    @property
    def serve_pid(self) -> int | None:
        """The process id of ``feproxy serve``."""
        return self._serve.pid if self._serve is not None else None

    # -- changes while the reactor runs ----------------------------------------

    def _ldap_write(self, operation: Callable[[ldap3.Connection], bool], what: str) -> None:
        """Run ``operation(connection)`` as the directory's administrator (in a thread)."""
        # Imported (its warning silenced) by frontend.directory.ldap already.
        from ldap3 import NONE, Connection, Server  # noqa: PLC0415

        if self._directory is None:
            raise StackError(f"{what}: the directory is not running")
        conn = Connection(
            Server(self._directory.url, connect_timeout=10, get_info=NONE),
            self._directory.admin_dn,
            self._directory.admin_password,
            auto_bind=True,
            receive_timeout=10,
        )
        try:
            if not operation(conn):
                raise StackError(f"{what}: {conn.result.get('description')}")
        finally:
            conn.unbind()

    async def add_replica(self, reactor: IServeReactor, host: str) -> None:
        """Give ``host`` a public store of the tree (the directory now lists it)."""
        attributes = store_attributes(host)
        await deferToThreadPool(
            reactor,
            reactor.getThreadPool(),
            self._ldap_write,
            lambda conn: conn.add(store_dn(host), attributes=attributes),
            f"adding the store of {host}",
        )

    async def remove_replica(self, reactor: IServeReactor, host: str) -> None:
        """Delete ``host``'s public store of the tree."""
        await deferToThreadPool(
            reactor,
            reactor.getThreadPool(),
            self._ldap_write,
            lambda conn: conn.delete(store_dn(host)),
            f"deleting the store of {host}",
        )

    def _count_reloads(self) -> tuple[int, bool]:
        if self._serve is None:
            raise StackError("feproxy serve is not running")
        text = self._serve.stderr_path.read_text(errors="replace")
        return text.count(_RELOADED), _NOT_RELOADED in text

    async def reload(self, reactor: IServeReactor, timeout: float = 15.0) -> None:
        """SIGHUP the front end (its caches empty) and wait until it has reloaded."""
        if self._serve is None or not self._serve.running:
            raise StackError("feproxy serve is not running")
        pool = reactor.getThreadPool()
        self._serve.signal(signal.SIGHUP)
        waited = 0.0
        while True:
            count, refused = await deferToThreadPool(reactor, pool, self._count_reloads)
            if count > self._reloads_seen:
                self._reloads_seen = count
                return
            if refused:
                raise StackError(f"feproxy serve refused the reload: {self._serve.tail()}")
            if waited > timeout:
                raise StackError(f"feproxy serve did not reload within {timeout:g} s")
            await deferLater(reactor, 0.05, lambda: None)
            waited += 0.05
