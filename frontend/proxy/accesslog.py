"""The access log: one event per request, in its own namespace.

Events go through ``twisted.logger`` under the namespace
``feproxy.access``; :func:`format_access` renders one as a single line.
"""

from __future__ import annotations

import time
from typing import Any

from twisted.logger import Logger, LogLevel

__all__ = ["ACCESS_NAMESPACE", "access_event", "access_log", "format_access", "is_access_event"]

ACCESS_NAMESPACE = "feproxy.access"

access_log = Logger(namespace=ACCESS_NAMESPACE)


def access_event(**fields: object) -> dict[str, Any]:
    """An access event, as ``access_log.info("access", **fields)`` would make it.

    Built here so that it can be handed straight to the access stream's
    observer (see :class:`frontend.logs.Logging`).
    """
    return {
        "log_logger": access_log,
        "log_level": LogLevel.info,
        "log_namespace": ACCESS_NAMESPACE,
        "log_source": None,
        "log_format": "access",
        "log_time": time.time(),
        **fields,
    }


def is_access_event(event: dict[str, Any]) -> bool:
    return event.get("log_namespace") == ACCESS_NAMESPACE


def format_access(event: dict[str, Any]) -> str:
    """``client user "METHOD path" backend status bytes duration``, one line."""
    return '{client} {user} "{method} {path}" {backend} {status} {bytes} {ms:.1f}ms'.format(
        client=event.get("client", "-"),
        user=event.get("user") or "-",
        method=event.get("method", "-"),
        path=event.get("path", "-"),
        backend=event.get("backend") or "-",
        status=event.get("status", "-"),
        bytes=event.get("bytes", 0),
        ms=float(event.get("duration", 0.0)) * 1000,
    )
