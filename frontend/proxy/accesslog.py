"""The access log: one event per request, in its own namespace, and its two
renderings (a combined-format line, a JSON line).

Events go through ``twisted.logger`` under the namespace ``feproxy.access``.
The request path only gathers references (the request's raw method, target,
version and header list, the user, the back end); decoding, escaping and
formatting happen when the access stream writes the event
(:func:`format_access`, :func:`access_json`), off the request's own path.

The line is nginx's ``combined`` format with ``$upstream_addr
$request_time`` appended (one line, here cut in two)::

    127.0.0.1 - alice [30/Nov/2026:06:30:00 +0000] "GET /exchange/ HTTP/1.1" 200 1234
    "-" "curl/8.5.0" 127.0.0.2:80 0.012

Bytes in the request line, Referer, User-Agent and user that could forge a
line or a field (``"``, ``\\``, control bytes, bytes above 126) are written
as ``\\xHH``, as nginx's default escaping does (and a space in the user too,
which is unquoted).
"""

from __future__ import annotations

import re
import time
from typing import Any

from twisted.logger import Logger, LogLevel, eventAsJSON

__all__ = [
    "ACCESS_NAMESPACE",
    "CLIENT_CLOSED",
    "access_event",
    "access_json",
    "access_log",
    "format_access",
    "is_access_event",
]

ACCESS_NAMESPACE = "feproxy.access"

#: The status logged for a request that got no answer (the client went away
#: first), as nginx logs it.
CLIENT_CLOSED = 499

access_log = Logger(namespace=ACCESS_NAMESPACE)


def access_event(**fields: object) -> dict[str, Any]:
    """An access event, as ``access_log.info("access", **fields)`` would make it.

    Built here so that it can be handed straight to the access stream's
    observer (see :class:`frontend.ops.logs.Logging`).  The fields the
    front end gives: ``client`` (str), ``user`` (str or None), ``method``,
    ``target`` and ``version`` (the request line's raw bytes), ``headers``
    (the request's raw header list, read only for Referer and User-Agent),
    ``backend`` (the server's name) and ``upstream`` (its ``address:port``),
    both None when no back end answered, ``vdir``, ``status`` (0: no answer
    was sent), ``bytes`` (body bytes sent), ``complete``, ``duration``
    (seconds).
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


# -- escaping -------------------------------------------------------------------

# nginx's default escaping: '"', '\', bytes below 32 and above 126.
_QUOTED_SPECIAL = re.compile(rb'[\x00-\x1f"\\\x7f-\xff]')
# An unquoted field (the user) also loses its spaces.
_BARE_SPECIAL = re.compile(rb'[\x00-\x20"\\\x7f-\xff]')


def _hex(match: re.Match[bytes]) -> bytes:
    return b"\\x%02X" % match.group()[0]


def escape(value: bytes, pattern: re.Pattern[bytes] = _QUOTED_SPECIAL) -> bytes:
    """``value`` with what could forge a log line or field as ``\\xHH``."""
    if pattern.search(value) is None:  # the common case: nothing to escape
        return value
    return pattern.sub(_hex, value)


# -- fields -----------------------------------------------------------------------

_REFERER = b"referer"
_USER_AGENT = b"user-agent"


def request_headers(headers: list[tuple[bytes, bytes]]) -> tuple[bytes | None, bytes | None]:
    """The first Referer and User-Agent of a raw header list (None: absent)."""
    referer = agent = None
    for name, value in headers:
        n = len(name)
        if n == 7 and referer is None and name.lower() == _REFERER:  # noqa: PLR2004 - len(b"referer")
            referer = value
        elif n == 10 and agent is None and name.lower() == _USER_AGENT:  # noqa: PLR2004 - len(b"user-agent")
            agent = value
    return referer, agent


def _status(event: dict[str, Any]) -> int:
    status = event.get("status") or 0
    return int(status) if status else CLIENT_CLOSED


_MONTHS = (b"Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec").split()


class _LocalTime:
    """``30/Nov/2026:06:30:00 +0000`` for a time, local, as nginx's
    ``$time_local``; remembered for the current second (thousands of lines
    share it)."""

    __slots__ = ("_second", "_text")

    def __init__(self) -> None:
        self._second = -1
        self._text = b""

    def __call__(self, when: float) -> bytes:
        second = int(when)
        if second != self._second:
            t = time.localtime(second)
            offset = t.tm_gmtoff // 60
            sign = b"-" if offset < 0 else b"+"
            offset = abs(offset)
            self._text = b"%02d/%s/%d:%02d:%02d:%02d %s%02d%02d" % (
                t.tm_mday,
                _MONTHS[t.tm_mon - 1],
                t.tm_year,
                t.tm_hour,
                t.tm_min,
                t.tm_sec,
                sign,
                offset // 60,
                offset % 60,
            )
            self._second = second
        return self._text


_local_time = _LocalTime()


# -- the two renderings -----------------------------------------------------------


def format_access(event: dict[str, Any]) -> bytes:
    """The combined log format line (with its newline), back end address
    and request time appended."""
    get = event.get
    user = get("user")
    referer, agent = request_headers(get("headers") or [])
    upstream = get("upstream")
    return b'%s - %s [%s] "%s %s %s" %d %d "%s" "%s" %s %.3f\n' % (
        str(get("client", "-")).encode("ascii", "backslashreplace"),
        escape(user.encode("utf-8"), _BARE_SPECIAL) if user else b"-",
        _local_time(get("log_time") or time.time()),
        escape(get("method") or b"-"),
        escape(get("target") or b"-"),
        escape(get("version") or b"-"),
        _status(event),
        get("bytes") or 0,
        escape(referer) if referer is not None else b"-",
        escape(agent) if agent is not None else b"-",
        upstream.encode("ascii", "backslashreplace") if upstream else b"-",
        float(get("duration") or 0.0),
    )


def _text(value: bytes | None) -> str | None:
    return None if value is None else value.decode("utf-8", "backslashreplace")


#: The keys of an access event's JSON line besides twisted.logger's own
#: (``log_time``, ``log_namespace``, ...), in order.
JSON_FIELDS = (
    *("client", "user", "method", "path", "version", "status", "bytes", "referer"),
    *("user_agent", "backend", "upstream", "vdir", "complete", "duration"),
)


def access_json(event: dict[str, Any]) -> bytes:
    """The event as a JSON line in ``twisted.logger``'s event format, with
    the fields of :data:`JSON_FIELDS` as text, numbers, booleans or null."""
    get = event.get
    referer, agent = request_headers(get("headers") or [])
    fields: dict[str, Any] = {k: v for k, v in event.items() if k.startswith("log_")}
    fields.update(
        client=get("client", "-"),
        user=get("user"),
        method=_text(get("method")),
        path=_text(get("target")),
        version=_text(get("version")),
        status=_status(event),
        bytes=get("bytes") or 0,
        referer=_text(referer),
        user_agent=_text(agent),
        backend=get("backend"),
        upstream=get("upstream"),
        vdir=get("vdir", "-"),
        complete=get("complete", True),
        duration=round(float(get("duration") or 0.0), 6),
    )
    return eventAsJSON(fields).encode("utf-8") + b"\n"
