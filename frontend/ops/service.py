"""The front end as a Twisted service: listeners, current runtime, admin site."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from OpenSSL import SSL, crypto
from twisted.application.service import IService, MultiService
from twisted.internet import defer
from twisted.internet.interfaces import IProtocolFactory, IReactorTime
from twisted.logger import LogEvent, Logger
from twisted.web.http import Request
from twisted.web.resource import IResource
from twisted.web.server import Site

from frontend.config import Config, DirectorySettings, load_config
from frontend.directory.watch import DirectoryWatcher
from frontend.errors import ConfigError
from frontend.ops.admin import admin_resource
from frontend.ops.listen import Listener, make_listener
from frontend.ops.memory import MemoryTrimmer
from frontend.ops.metrics import Load, Metrics
from frontend.ops.status import build_status
from frontend.proxy import FrontEnd, Runtime
from frontend.routing.marks import UnavailableMarks
from frontend.wire.pool import Upstream
from frontend.wire.server import ClientLimits, FrontEndFactory

if TYPE_CHECKING:
    from frontend.directory.interfaces import CacheStats, Directory
    from frontend.ops.reactor import IServeReactor

__all__ = ["FrontEndService", "QuietSite"]

log = Logger()


class QuietSite(Site):
    """A Site without Twisted's access log (ours is ``feproxy.access``)."""

    noisy = False

    def __init__(self, resource: IResource, reactor: IReactorTime) -> None:
        Site.__init__(self, resource, reactor=reactor)

    def log(self, request: Request) -> None:
        pass


class FrontEndService(MultiService):
    """Listeners for one front end, serving the current configuration.

    :meth:`reload` swaps in a new configuration: requests in flight keep the
    runtime they started with; unavailable marks are kept.
    """

    def __init__(
        self,
        config: Config,
        reactor: IServeReactor,
        config_path: str | None = None,
        inherited: dict[str, int] | None = None,
        *,
        admin: bool = True,
        access: Callable[[LogEvent], None] | None = None,
    ) -> None:
        """``inherited`` maps listener descriptions to the listening sockets a
        ``--workers`` master opened; ``admin`` False skips the admin listeners;
        ``access`` receives the access events (default: the global log publisher)."""
        MultiService.__init__(self)
        self._inherited = inherited or {}
        self._serve_admin = admin
        self._reactor = reactor
        self.clock = reactor
        self.config_path = config_path or config.source
        self.started_at = reactor.seconds()
        self.marks = UnavailableMarks(reactor, config.frontend.unavailable_for)
        self.metrics = Metrics(
            marks=self.marks.snapshot, caches=self._caches, load=self._load, clock=reactor.seconds
        )
        self._directory: Directory | None = None
        self._directory_settings: DirectorySettings | None = None
        self._watcher: DirectoryWatcher | None = None
        self._retired: list[Directory] = []
        self.runtime = Runtime.build(
            config,
            reactor,
            self.marks,
            agent=Upstream.for_config(reactor, config),
            directory=self._directory_for(config),
        )
        self.loaded_at = reactor.seconds()
        self.frontend = FrontEnd(lambda: self.runtime, reactor, self.marks, self.metrics, access)
        self.limits = ClientLimits()
        self.factory = FrontEndFactory(self.frontend, self.limits, reactor)
        trimmer: IService = MemoryTrimmer(self.factory, reactor)
        trimmer.setServiceParent(self)
        self._set_limits(config)
        pages = admin_resource(self.metrics, lambda: build_status(self), clock=reactor.seconds)
        self.admin_site = QuietSite(pages, reactor=reactor)
        self._listeners: dict[str, Listener] = {}
        self._admin_listeners: dict[str, Listener] = {}
        self._set_all_listeners(config)

    def _set_limits(self, config: Config) -> None:
        fe = config.frontend
        self.limits.header_timeout = fe.header_timeout
        self.limits.body_timeout = fe.body_timeout
        self.limits.max_connections = fe.max_connections
        self.limits.max_body_size = fe.max_body_size
        self.limits.idle_timeout = fe.client_idle_timeout
        self.limits.send_timeout = fe.send_timeout
        # A backstop over the back-end and directory timeouts, which answer first.
        directory_timeout = config.directory.timeout if config.directory is not None else 0.0
        self.limits.answer_timeout = fe.connect_timeout + fe.response_timeout + directory_timeout

    def _load(self) -> Load:
        return Load(
            open_connections=self.factory.open_connections(),
            max_connections=self.limits.max_connections,
            requests_in_flight=self.frontend.in_flight,
        )

    def _caches(self) -> tuple[CacheStats, ...]:
        lookups = self.runtime.lookups
        return lookups.caches if lookups is not None else ()

    def _set_all_listeners(self, config: Config) -> None:
        listen = config.frontend.listen
        if self._inherited:
            if set(listen) != set(self._inherited):
                log.warn("with --workers the listening sockets stay those of the start")
            listen = tuple(self._inherited)
        self._set_listeners(self._listeners, listen, self.factory)
        admin = config.frontend.admin if self._serve_admin else ()
        self._set_listeners(self._admin_listeners, admin, self.admin_site)

    @property
    def config(self) -> Config:
        return self.runtime.config

    def _set_listeners(
        self, current: dict[str, Listener], wanted: tuple[str, ...], factory: IProtocolFactory
    ) -> None:
        """Open listeners new in ``wanted``, close those gone, reload kept TLS ones."""
        for desc in list(current):
            if desc not in wanted:
                current.pop(desc).service.disownServiceParent()
        for desc in wanted:
            kept = current.get(desc)
            if kept is None:
                fd = self._inherited.get(desc) if factory is self.factory else None
                listener = make_listener(desc, factory, self._reactor, fd)
                listener.service.setName(f"listen {desc}")
                listener.service.setServiceParent(self)
                current[desc] = listener
            elif kept.tls is not None:
                try:
                    kept.tls.reload()
                except (OSError, ValueError, SSL.Error, crypto.Error) as e:
                    log.error(  # noqa: TRY400 - twisted.logger; the reason is in the message
                        "{desc}: certificate not reloaded, keeping the old one: {e}", desc=desc, e=e
                    )

    def _directory_for(self, config: Config) -> Directory | None:
        """The directory client for ``config``: kept while its settings are unchanged.

        A replaced client is stopped a response timeout later, when requests
        that started with it are over.
        """
        settings = config.directory
        if settings == self._directory_settings:
            return self._directory
        old = self._directory
        if self._watcher is not None and self._watcher.running:
            self._watcher.stopService()
        self._directory_settings = settings
        self._directory = self._watcher = None
        if settings is not None:
            # ldap3 is imported only by a front end that has a directory.
            from frontend.directory.ldap import LdapDirectory  # noqa: PLC0415

            directory = LdapDirectory(settings, self._reactor, observe=self.metrics.ldap_query)
            self._directory = directory
            self._watcher = DirectoryWatcher(
                directory, settings.poll_interval, self._directory_changed, self._reactor
            )
            if self.running:
                directory.start()
                self._watcher.startService()
        if old is not None:
            self._retired.append(old)
            self._reactor.callLater(config.frontend.response_timeout, self._retire, old)
        return self._directory

    def _retire(self, directory: Directory) -> None:
        if directory in self._retired:
            self._retired.remove(directory)
            directory.stop()

    def _directory_changed(self) -> None:
        """The directory's configuration changed: forget what was looked up."""
        if self.runtime.lookups is not None:
            self.runtime.lookups.clear()

    def startService(self) -> None:
        if self._directory is not None:
            self._directory.start()
        if self._watcher is not None:
            self._watcher.startService()
        MultiService.startService(self)

    def stopService(self) -> defer.Deferred[None]:
        """Stop accepting, let requests in flight finish (up to stop_timeout),
        then stop the directory clients' threads."""
        return defer.ensureDeferred(self._stop())

    async def _stop(self) -> None:
        await defer.maybeDeferred(super().stopService)
        await self.frontend.drained(self.config.frontend.stop_timeout)
        await self.factory.close_all(2.0)
        if self._watcher is not None and self._watcher.running:
            self._watcher.stopService()
        stops = [d.stop() for d in [self._directory, *self._retired] if d is not None]
        self._retired.clear()
        await defer.gatherResults(stops)

    def reload(self, path: str) -> bool:
        """Load ``path`` and swap it in; on error keep serving the old one."""
        try:
            config = load_config(path)
        except ConfigError as e:
            log.error(  # noqa: TRY400 - twisted.logger; the reason is in the message
                "configuration not reloaded, keeping the old one: {e}", e=e
            )
            return False
        self.marks.duration = config.frontend.unavailable_for
        old = self.runtime
        self.runtime = Runtime.build(
            config,
            self._reactor,
            self.marks,
            agent=Upstream.for_config(self._reactor, config),
            directory=self._directory_for(config),
        )
        # The new runtime has its own back-end pool; requests in flight keep
        # their connections, the idle ones of the old pool go now.
        old.agent.close_idle()
        self.loaded_at = self._reactor.seconds()
        self.config_path = path
        self._set_limits(config)
        self._set_all_listeners(config)
        log.info("configuration reloaded from {path}", path=path)
        return True
