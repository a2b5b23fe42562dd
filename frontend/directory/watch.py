"""Noticing configuration changes in the directory, so caches do not lag.

A new replica (or a removed one, or a mailbox store moved to another server)
would otherwise be seen only when the cached lookups expire, up to ten
minutes later.  :class:`DirectoryWatcher` polls a fingerprint of the
configuration container every ``poll_interval`` seconds and calls
``on_change`` when it moves.
"""

from __future__ import annotations

from collections.abc import Callable

from twisted.application.service import Service
from twisted.internet import defer
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from frontend.directory.interfaces import ConfigFingerprint
from frontend.errors import DirectoryUnavailable

__all__ = ["DirectoryWatcher"]

log = Logger()


class DirectoryWatcher(Service):
    """Polls ``directory.config_fingerprint()`` on the injected clock."""

    def __init__(
        self,
        directory: ConfigFingerprint,
        interval: float,
        on_change: Callable[[], None],
        clock: IReactorTime,
    ) -> None:
        self._directory = directory
        self._interval = interval
        self._on_change = on_change
        self._clock = clock
        self._last: str | None = None
        self._loop: LoopingCall | None = None
        self.polls = 0

    def startService(self) -> None:
        Service.startService(self)
        if self._interval > 0:
            self._loop = LoopingCall(self.poll)
            self._loop.clock = self._clock
            self._loop.start(self._interval, now=True).addErrback(
                lambda f: log.failure("directory watcher stopped", f)
            )

    def stopService(self) -> None:
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        self._loop = None
        Service.stopService(self)

    async def _poll(self) -> None:
        try:
            fingerprint = await self._directory.config_fingerprint()
        except DirectoryUnavailable:
            return  # logged by the directory client; try again next time
        self.polls += 1
        if self._last is not None and fingerprint != self._last:
            log.info("directory configuration changed: emptying the caches")
            self._on_change()
        self._last = fingerprint

    def poll(self) -> defer.Deferred[None]:
        """One poll (the first one only records the starting point)."""
        return defer.ensureDeferred(self._poll())
