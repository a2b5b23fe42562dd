"""Every error the front end can answer a client with, and its HTTP status.

Each class carries the status and the one-line reason the client sees.  The
reason never holds internal detail (no DN, host name, address or traceback);
whatever the operator needs goes to the log through ``detail``.

:func:`status_for` is the single place where failures become statuses.
"""

from __future__ import annotations

from twisted.internet import error as ierror
from twisted.python.failure import Failure

__all__ = [
    "AnswerTimeout",
    "AuthenticationRequired",
    "BackendFailed",
    "BackendRefused",
    "BadGateway",
    "BadRequest",
    "ConfigError",
    "ConnectTimeout",
    "DirectoryUnavailable",
    "ErrorAnswer",
    "ExpectationFailed",
    "Forbidden",
    "GatewayTimeout",
    "HeadersTooLarge",
    "NoServerAvailable",
    "NotFound",
    "PayloadTooLarge",
    "ProxyError",
    "ReferralLoop",
    "RequestTimeout",
    "ServiceUnavailable",
    "TooManyConnections",
    "URITooLong",
    "VersionNotSupported",
    "status_for",
]


class ProxyError(Exception):
    """An answer to the client: ``status`` and a one-line ``reason``.

    ``detail`` is for the operator's log only.
    """

    status = 500
    reason = "The front end failed to handle the request."

    def __init__(self, reason: str | None = None, *, detail: str = "") -> None:
        if reason is not None:
            self.reason = reason
        self.detail = detail
        super().__init__(self.reason if not detail else f"{self.reason} ({detail})")


class BadRequest(ProxyError):
    status = 400
    reason = "The request is malformed."


class RequestTimeout(ProxyError):
    status = 408
    reason = "The request did not arrive in time."


class PayloadTooLarge(ProxyError):
    status = 413
    reason = "The request body is too large."


class URITooLong(ProxyError):
    status = 414
    reason = "The request line is too long."


class ExpectationFailed(ProxyError):
    status = 417
    reason = "Only the expectation 100-continue is supported."


class HeadersTooLarge(ProxyError):
    status = 431
    reason = "The request headers are too large."


class VersionNotSupported(ProxyError):
    status = 505
    reason = "Only HTTP/1.0 and HTTP/1.1 are served."


class AuthenticationRequired(ProxyError):
    status = 401
    reason = "Authentication is required."


class Forbidden(ProxyError):
    status = 403
    reason = "Access is forbidden."


class NotFound(ProxyError):
    status = 404
    reason = "Nothing is served at this address."


class BadGateway(ProxyError):
    status = 502
    reason = "The back-end server failed to answer."


class BackendRefused(BadGateway):
    """Nothing of the request reached the back end: safe to try elsewhere."""

    reason = "The back-end server refused the connection."


class BackendFailed(BadGateway):
    """The back end broke the exchange after the request may have reached it."""

    reason = "The back-end server closed the connection without a complete answer."


class ReferralLoop(BadGateway):
    reason = "The back-end servers referred the request in a loop."


class ServiceUnavailable(ProxyError):
    status = 503
    reason = "The service is temporarily unavailable."


class DirectoryUnavailable(ServiceUnavailable):
    reason = "The directory is unavailable; try again later."


class TooManyConnections(ServiceUnavailable):
    reason = "Too many connections; try again later."


class NoServerAvailable(ServiceUnavailable):
    reason = "No back-end server is available for this request."


class GatewayTimeout(ProxyError):
    status = 504
    reason = "The back-end server did not answer in time."


class AnswerTimeout(GatewayTimeout):
    """The request got no answer within the connection's deadline (a backstop
    over the back-end and directory timeouts)."""

    reason = "The request could not be answered in time."


class ConnectTimeout(GatewayTimeout):
    """The TCP connect timed out: nothing of the request reached the back end."""

    reason = "The back-end server could not be reached in time."


class ConfigError(Exception):
    """A configuration file is invalid: ``key`` is the dotted key path."""

    def __init__(self, key: str, reason: str) -> None:
        self.key = key
        self.reason = reason
        super().__init__(f"{key}: {reason}" if key else reason)


class ErrorAnswer:
    """What the client gets for a failure: status and one-line reason."""

    __slots__ = ("log_detail", "reason", "status")

    def __init__(self, status: int, reason: str, log_detail: str) -> None:
        self.status = status
        self.reason = reason
        self.log_detail = log_detail


def status_for(failure: Failure | BaseException) -> ErrorAnswer:
    """Map any failure of request handling to the answer the client gets.

    Known front-end errors carry their own status (the back-end client,
    :mod:`frontend.wire.backend`, raises them); Twisted's connection errors are
    translated; anything else is a 500 whose reason
    says nothing of the cause (the log gets the cause).
    """
    exc = failure.value if isinstance(failure, Failure) else failure
    if isinstance(exc, ProxyError):
        return ErrorAnswer(exc.status, exc.reason, exc.detail or exc.reason)
    if isinstance(exc, ierror.ConnectionRefusedError | ierror.NoRouteError):
        return status_for(BackendRefused(detail=str(exc)))
    if isinstance(exc, ierror.TimeoutError | ierror.UserError):
        # TimeoutError is a connect timeout; UserError is raised by the
        # endpoint when a connect attempt is cancelled by our own deadline.
        return status_for(ConnectTimeout(detail=str(exc)))
    if isinstance(exc, ierror.ConnectError | ierror.DNSLookupError):
        return status_for(BackendRefused(detail=str(exc)))
    return ErrorAnswer(500, ProxyError.reason, repr(exc))
