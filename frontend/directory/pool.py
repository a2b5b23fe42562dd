"""The directory client's worker side: a thread pool and pooled ldap3 connections.

ldap3 blocks, so :class:`LdapPool` runs every piece of LDAP work with
``deferToThreadPool`` on a bounded pool of its own.  Each worker borrows a
bound service-account connection; a reused connection that fails (the server
restarted) is dropped with all idle ones and the work is retried once on a
fresh connection, after which the Deferred fails with
:class:`frontend.errors.DirectoryUnavailable` (``detail`` for the log).
"""

from __future__ import annotations

import contextlib
import math
import threading
import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING, Concatenate, ParamSpec, TypeVar

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool

from frontend.directory.bind import octets
from frontend.errors import DirectoryUnavailable

if TYPE_CHECKING:
    from frontend.config.directory import DirectorySettings
    from frontend.directory.interfaces import IDirectoryReactor, QueryObserver

with warnings.catch_warnings():
    # ldap3 2.9.1 imports tagMap and typeMap from pyasn1's BER encoder, which
    # pyasn1 >= 0.6.1 deprecates; the warning comes once, at import time,
    # and under warnings-as-errors (the test suite) the import would fail.
    warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"ldap3(\..*)?$")
    from ldap3 import NONE, SYNC, Connection, Server
    from ldap3.core.exceptions import (
        LDAPBindError,
        LDAPException,
    )


__all__ = ["FAILURES", "LdapPool"]

log = Logger()

_T = TypeVar("_T")
_P = ParamSpec("_P")

# What a directory operation may fail with: ldap3's errors, and what its
# BER decoder raises on bytes that are not LDAP (KeyError, IndexError, ...;
# seen when a "server" echoes the request back).  A bug in this module is
# caught too, but still logged with its type and message as the detail.
FAILURES = (LDAPException, OSError, LookupError, ValueError, TypeError)


class LdapPool:
    """Runs ldap3 work in a thread pool on pooled service-account connections.

    ``threadpool`` may be injected (its owner then starts and stops it);
    otherwise one of ``settings.pool_size`` threads is made here and started
    and stopped with :meth:`start` and :meth:`stop`.
    """

    def __init__(
        self, settings: DirectorySettings, reactor: IDirectoryReactor, threadpool: ThreadPool | None
    ) -> None:
        self.settings = settings
        self._reactor = reactor
        # Told (operation, seconds, ok) of every query, on the reactor thread.
        self.observe: QueryObserver | None = None
        self._own_pool = threadpool is None
        self._pool = threadpool or self._new_pool()
        self._lock = threading.Lock()
        self._idle: list[Connection] = []
        self._stopped = False
        self._shutdown_trigger: object | None = None
        # ldap3 packs the receive timeout into SO_RCVTIMEO as whole seconds.
        self._receive_timeout = max(1, math.ceil(settings.timeout))

    def _new_pool(self) -> ThreadPool:
        size = self.settings.pool_size
        return ThreadPool(minthreads=0, maxthreads=size, name="feproxy-ldap")

    def start(self) -> None:
        self._stopped = False
        if self._own_pool and not self._pool.started:
            if self._pool.joined:  # stopped before: a ThreadPool runs once
                self._pool = self._new_pool()
            self._pool.start()
            self._shutdown_trigger = self._reactor.addSystemEventTrigger(
                "during", "shutdown", self._stop_at_shutdown
            )

    def _stop_at_shutdown(self) -> Deferred[None]:
        self._shutdown_trigger = None  # firing now: nothing to remove
        return self.stop()

    def stop(self) -> Deferred[None]:
        if self._stopped:
            return succeed(None)
        self._stopped = True
        if self._shutdown_trigger is not None:
            trigger, self._shutdown_trigger = self._shutdown_trigger, None
            self._reactor.removeSystemEventTrigger(trigger)
        if not self._pool.started:
            self._close_idle()
            return succeed(None)
        d = deferToThreadPool(self._reactor, self._pool, self._close_idle)

        def stop_pool(_result: object) -> None:
            if self._own_pool:
                self._pool.stop()

        return d.addBoth(stop_pool)

    def run(
        self,
        what: str,
        op: Callable[Concatenate[Connection, _P], _T],
        *args: _P.args,
        **kwargs: _P.kwargs,
    ) -> Deferred[_T]:
        """Run ``op(connection, *args, **kwargs)`` in the pool on a service connection."""

        def work() -> _T:
            return self._with_connection(what, op, *args, **kwargs)

        return self.defer(what, work)

    def defer(
        self,
        what: str,
        work: Callable[_P, _T],
        *args: _P.args,
        **kwargs: _P.kwargs,
    ) -> Deferred[_T]:
        """Run ``work(*args, **kwargs)`` in the pool; log DirectoryUnavailable failures."""
        if self._stopped:
            return fail(DirectoryUnavailable(detail="directory client is stopped"))
        started = self._reactor.seconds()
        d = deferToThreadPool(self._reactor, self._pool, work, *args, **kwargs)

        def observe(result: _T | Failure) -> _T | Failure:
            if self.observe is not None:
                ok = not isinstance(result, Failure)
                self.observe(what, self._reactor.seconds() - started, ok=ok)
            if isinstance(result, Failure) and result.check(DirectoryUnavailable):
                detail = getattr(result.value, "detail", "")
                log.error("directory {what} failed: {detail}", what=what, detail=detail)
            return result

        return d.addBoth(observe)

    def warn(self, fmt: str, **kw: object) -> None:
        """Log a warning from a worker thread (through the reactor thread)."""
        self._reactor.callFromThread(log.warn, fmt, **kw)

    def debug(self, fmt: str, **kw: object) -> None:
        """Log a debug line from a worker thread (through the reactor thread)."""
        self._reactor.callFromThread(log.debug, fmt, **kw)

    def unavailable(self, what: str, error: BaseException) -> DirectoryUnavailable:
        return DirectoryUnavailable(
            detail=f"LDAP {what} against {self.settings.url} failed: {error!r}"
        )

    def connection(self, user: str, password: bytes) -> Connection:
        """A new, unopened connection that will bind as ``user``.

        ``password``'s octets are sent unchanged (:func:`octets`: ldap3 would
        SASLprep a str, changing or refusing some passwords).
        """
        # ldap3 takes ldap://host:port but not the "/" an LDAP URL may end with.
        url = self.settings.url.strip().rstrip("/")
        # get_info=NONE: no schema download on every connection (values are
        # read raw, nothing needs it); it made each user bind ~15x slower.
        return Connection(
            Server(url, connect_timeout=self.settings.timeout, get_info=NONE),
            user=user,
            # ldap3 sends bytes raw (no SASLprep); its stubs say str only.
            password=octets(password),  # type: ignore[arg-type]
            client_strategy=SYNC,
            auto_bind=False,
            receive_timeout=self._receive_timeout,
            raise_exceptions=True,
            read_only=True,
            auto_referrals=False,
        )

    @staticmethod
    def close(conn: Connection) -> None:
        """Unbind and close, whatever state the connection is in."""
        with contextlib.suppress(LDAPException, OSError):
            conn.unbind()  # the connection is being thrown away; nothing to save
        # ldap3 keeps the socket of a failed connect open (and unbind skips
        # a connection it never opened): close it here.
        sock = getattr(conn, "socket", None)
        if sock is not None:
            sock.close()

    def _with_connection(
        self,
        what: str,
        op: Callable[Concatenate[Connection, _P], _T],
        *args: _P.args,
        **kwargs: _P.kwargs,
    ) -> _T:
        """Run ``op(connection, *args)`` in a worker thread, retrying once.

        A reused connection that fails may have died since it was last used:
        every idle connection is dropped and ``op`` runs once more on a fresh
        one.  A fresh connection that fails means the directory is down.
        """
        conn, reused = self._checkout()
        try:
            return self._attempt(conn, op, *args, **kwargs)
        except FAILURES as first:
            if not reused or not isinstance(first, LDAPException):
                raise self.unavailable(what, first) from first
            self.warn(
                "LDAP {what} failed on a reused connection to {url}, reconnecting: {error!r}",
                what=what,
                url=self.settings.url,
                error=first,
            )
            self._close_idle()
        try:
            return self._attempt(self._connect(), op, *args, **kwargs)
        except FAILURES as error:
            raise self.unavailable(what, error) from error

    def _attempt(
        self,
        conn: Connection,
        op: Callable[Concatenate[Connection, _P], _T],
        *args: _P.args,
        **kwargs: _P.kwargs,
    ) -> _T:
        try:
            result = op(conn, *args, **kwargs)
        except BaseException:
            self.close(conn)
            raise
        self._checkin(conn)
        return result

    def _connect(self) -> Connection:
        """A new connection, open and bound as the service account."""
        conn = self.connection(self.settings.bind_dn, self.settings.bind_password.encode("utf-8"))
        try:
            bound = conn.bind()
        except BaseException:
            self.close(conn)
            raise
        if not bound:
            self.close(conn)
            raise LDAPBindError(f"service account bind refused: {conn.result}")
        return conn

    def _checkout(self) -> tuple[Connection, bool]:
        with self._lock:
            if self._idle:
                return self._idle.pop(), True
        try:
            return self._connect(), False
        except FAILURES as error:
            raise self.unavailable("connect", error) from error

    def _checkin(self, conn: Connection) -> None:
        with self._lock:
            if not self._stopped and len(self._idle) < self.settings.pool_size:
                self._idle.append(conn)
                return
        self.close(conn)

    def _close_idle(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            self.close(conn)
