"""The back-end client: connections by server name, kept in a pool.

:class:`Upstream` sends a request to a server (by its directory host name,
mapped to an address by the ``[hosts]`` table or resolved by the reactor,
never blocking) on a pooled idle connection when there is one, else on a
new one.  Idle connections are kept LIFO per server (at most
``max_idle_per_backend``, each for ``idle_timeout`` seconds): the most
recently used is the least likely to have been closed by the back end.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping

from twisted.internet import error as ierror
from twisted.internet.abstract import isIPAddress, isIPv6Address
from twisted.internet.defer import Deferred, fail
from twisted.internet.endpoints import HostnameEndpoint
from twisted.internet.interfaces import IConnector
from twisted.internet.protocol import ClientFactory, Factory
from twisted.python.failure import Failure

from frontend.config import Config
from frontend.wire.backend import BackendConnection, BackendExchange
from frontend.wire.interfaces import Exchange, IBackendReactor, OutgoingRequest

__all__ = ["Upstream"]


class _Dial(ClientFactory):
    """One connection attempt, for one exchange."""

    noisy = False

    def __init__(self, upstream: Upstream, ex: BackendExchange) -> None:
        self._upstream = upstream
        self._ex = ex

    def buildProtocol(self, addr: object) -> BackendConnection:  # noqa: ARG002 - one kind
        conn = BackendConnection(self._upstream)
        conn.on_made = self._ex.connected
        return conn

    def clientConnectionFailed(self, connector: IConnector, reason: Failure) -> None:  # noqa: ARG002, N802 - Twisted's interface
        self._ex.connect_failed(reason)


def _stop(connector: IConnector) -> None:
    """Give up a connection attempt (one already made is the exchange's to close)."""
    with contextlib.suppress(ierror.NotConnectingError):
        connector.stopConnecting()


class _ConnectionFactory(Factory):
    noisy = False  # no log line per connection

    def __init__(self, upstream: Upstream) -> None:
        self.upstream = upstream

    def buildProtocol(self, addr: object) -> BackendConnection:  # noqa: ARG002 - one kind of connection
        return BackendConnection(self.upstream)


class Upstream:
    """Sends requests to back ends over plain HTTP/1.1 on ``port``."""

    def __init__(
        self,
        reactor: IBackendReactor,
        *,
        port: int,
        connect_timeout: float,
        response_timeout: float,
        hosts: Mapping[str, str],
        max_idle_per_backend: int,
        idle_timeout: float,
    ) -> None:
        self._reactor = reactor
        self.clock = reactor
        self._port = port
        self._connect_timeout = connect_timeout
        self.response_timeout = response_timeout
        self._hosts = {k.lower(): v for k, v in hosts.items()}
        self._max_idle = max_idle_per_backend
        self.idle_timeout = idle_timeout
        self._idle: dict[str, list[BackendConnection]] = {}
        self._factory = _ConnectionFactory(self)
        self.connections_made = 0

    @classmethod
    def for_config(cls, reactor: IBackendReactor, config: Config) -> Upstream:
        """The back-end client of a configuration."""
        fe = config.frontend
        return cls(
            reactor,
            port=fe.backend_port,
            connect_timeout=fe.connect_timeout,
            response_timeout=fe.response_timeout,
            hosts=config.hosts,
            max_idle_per_backend=fe.max_idle_per_backend,
            idle_timeout=fe.idle_timeout,
        )

    def send(self, server: str, request: OutgoingRequest) -> Deferred[Exchange]:
        """Send one request; fires with the response once its head is read.

        Fails with the endpoint's connect errors,
        :class:`~frontend.errors.GatewayTimeout` when no head arrives in time,
        :class:`~frontend.errors.BackendFailed` when the exchange breaks.
        The request body's source is not touched before the connection is
        made (and, with ``expect_continue``, before the back end asks for
        it), so a request that could not connect can go to another server.
        """
        key = server.lower()
        ex = BackendExchange(server, key, request)
        d = ex.wait()
        idle = self._idle.get(key)
        if idle:
            idle.pop().start(ex, reused=True)
        else:
            self.connect(ex)
        return d  # type: ignore[return-value]  # Deferred is invariant; an exchange is an Exchange

    def connect(self, ex: BackendExchange) -> None:
        """Open a new connection for ``ex``.

        An address (from ``[hosts]``) is dialled with ``connectTCP`` and a
        factory of the exchange's own: a burst of new connections pays for
        no endpoint machinery.  A host name goes through Twisted's
        ``HostnameEndpoint`` (resolution without blocking, IPv4 and IPv6).
        """
        address = self._hosts.get(ex.key, ex.key)
        reactor, port, timeout = self._reactor, self._port, self._connect_timeout
        if isIPAddress(address) or isIPv6Address(address):
            connector = reactor.connectTCP(address, port, _Dial(self, ex), timeout=timeout)
            ex.connecting(lambda: _stop(connector))
            return
        try:
            endpoint = HostnameEndpoint(reactor, address.encode("idna"), port, timeout=timeout)
        except UnicodeError:
            ex.fire(ierror.DNSLookupError(f"bad host name {address!r}"))
            return
        try:
            connecting = endpoint.connect(self._factory)
        except Exception as e:
            connecting = fail(e)
        connecting.addCallbacks(ex.connected, ex.connect_failed)
        ex.connecting(connecting.cancel)

    def release(self, conn: BackendConnection) -> None:
        """An exchange finished cleanly on ``conn``: keep it idle, or close it."""
        if self._max_idle <= 0:
            conn.expire()
            return
        idle = self._idle.setdefault(conn.key, [])
        if len(idle) >= self._max_idle:
            idle.pop(0).expire()  # the oldest is nearest the back end's own timeout
        conn.mark_idle()
        idle.append(conn)

    def forget(self, conn: BackendConnection) -> None:
        idle = self._idle.get(conn.key)
        if idle is not None and conn in idle:
            idle.remove(conn)

    def close_idle(self) -> None:
        """Close every pooled idle connection (at stop and reload)."""
        pools, self._idle = self._idle, {}
        for idle in pools.values():
            for conn in idle:
                conn.expire()

    def idle_count(self, server: str) -> int:
        """How many idle connections to ``server`` are pooled."""
        return len(self._idle.get(server.lower(), ()))
