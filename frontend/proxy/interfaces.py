"""What the request handler tells the layer above it (metrics), as Protocols."""

from __future__ import annotations

from typing import Protocol

from frontend.directory.interfaces import DirectorySearch, PasswordCheck

__all__ = ["NO_OBSERVER", "ProxyObserver", "UserDirectory"]


class UserDirectory(DirectorySearch, PasswordCheck, Protocol):
    """The directory as a runtime uses it: lookups and password checks."""


class ProxyObserver(Protocol):
    """Told what the handler does (implemented by :class:`frontend.ops.metrics.Metrics`)."""

    def request_finished(self, vdir: str, status: int, backend: str | None, seconds: float) -> None:
        """A request is over: its virtual directory, status, back end and duration."""

    def referral_followed(self, vdir: str) -> None:
        """A back end's referral was followed."""

    def server_marked(self, server: str) -> None:
        """A back end was marked unavailable."""


class _NoObserver:
    def request_finished(self, vdir: str, status: int, backend: str | None, seconds: float) -> None:
        pass

    def referral_followed(self, vdir: str) -> None:
        pass

    def server_marked(self, server: str) -> None:
        pass


NO_OBSERVER: ProxyObserver = _NoObserver()
