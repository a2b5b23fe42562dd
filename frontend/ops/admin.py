"""The admin listener's pages: Prometheus metrics, and the status as JSON and HTML.

``admin_resource(metrics, status)`` is the root resource of the admin
listener (loopback only by default):

- ``GET /metrics``: every metric, in the text format the scraper asks for
  (``Accept`` negotiation by ``prometheus_client``; plain ``text/plain;
  version=0.0.4`` by default, OpenMetrics when asked).
- ``GET /status`` or ``/status.json``: ``status()`` as JSON.
- ``GET /`` or ``/status.html``: the same facts as a small self-contained
  HTML page (no script, no external style), every value HTML-escaped: back-end
  names come from the directory.

``HEAD`` is answered like ``GET`` without a body; any other method gets 405,
any other path 404, each with a one-line ``text/plain`` body.  The status
document is read when a page is asked for and rendered with whatever keys it
has: a missing or odd value shows as a dash, never as an error.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from html import escape

from prometheus_client.exposition import choose_encoder
from twisted.logger import Logger
from twisted.web.resource import IResource, Resource
from twisted.web.server import Request

from frontend.ops.metrics import Metrics

__all__ = ["AdminResource", "admin_resource", "format_span", "render_status_html"]

log = Logger()

_ALLOWED = (b"GET", b"HEAD")
_DASH = "\u2014"


def admin_resource(
    metrics: Metrics,
    status: Callable[[], Mapping[str, object]],
    *,
    clock: Callable[[], float] = time.time,
) -> IResource:
    """The admin listener's root resource.

    ``status`` is called once per status page; ``clock`` gives the time used
    for "in 8m 20s" when the status document carries no ``now``.
    """
    return AdminResource(metrics, status, clock=clock)


class AdminResource(Resource):
    """Serves /metrics, /status(.json) and / (or /status.html); nothing else."""

    isLeaf = True

    def __init__(
        self,
        metrics: Metrics,
        status: Callable[[], Mapping[str, object]],
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        Resource.__init__(self)
        self._metrics = metrics
        self._status = status
        self._clock = clock
        self._pages: dict[bytes, Callable[[Request], bytes]] = {
            b"/metrics": self._render_metrics,
            b"/status": self._render_json,
            b"/status.json": self._render_json,
            b"/": self._render_html,
            b"/status.html": self._render_html,
        }

    def render(self, request: Request) -> bytes:
        """The page at ``request.path``: 404 for unknown paths, 405 for other methods."""
        request.setHeader(b"cache-control", b"no-store")
        request.setHeader(b"x-content-type-options", b"nosniff")
        page = self._pages.get(request.path)
        if page is None:
            return _plain(request, 404, "Not found.")
        if request.method not in _ALLOWED:
            request.setHeader(b"allow", b", ".join(_ALLOWED))
            return _plain(request, 405, "Method not allowed.")
        return page(request)

    def _render_metrics(self, request: Request) -> bytes:
        accept = request.getHeader(b"accept")
        encoder, content_type = choose_encoder(accept.decode("latin-1") if accept else "")
        body = encoder(self._metrics.registry)
        request.setHeader(b"content-type", content_type.encode("ascii"))
        return body

    def _read_status(self) -> Mapping[str, object] | None:
        """The status document, or None (logged) when building it failed."""
        try:
            return self._status()
        except Exception:  # whatever status() raises becomes a logged 500, not a traceback
            log.failure("building the status document failed")
            return None

    def _render_json(self, request: Request) -> bytes:
        data = self._read_status()
        if data is None:
            return _plain(request, 500, "The status is not available.")
        request.setHeader(b"content-type", b"application/json")
        return json.dumps(dict(data), indent=2, sort_keys=True, default=str).encode() + b"\n"

    def _render_html(self, request: Request) -> bytes:
        data = self._read_status()
        if data is None:
            return _plain(request, 500, "The status is not available.")
        request.setHeader(b"content-type", b"text/html; charset=utf-8")
        request.setHeader(
            b"content-security-policy", b"default-src 'none'; style-src 'unsafe-inline'"
        )
        return render_status_html(data, self._clock()).encode("utf-8")


def _plain(request: Request, code: int, message: str) -> bytes:
    """A one-line ``text/plain`` answer."""
    request.setResponseCode(code)
    request.setHeader(b"content-type", b"text/plain; charset=utf-8")
    return f"{code} {message}\n".encode()


# -- HTML -------------------------------------------------------------------


def _num(value: object) -> float | None:
    """``value`` as a finite number, or None (booleans are not numbers here)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _text(value: object) -> str:
    """``value`` escaped for HTML; a dash when missing."""
    if value is None or value == "":
        return _DASH
    return escape(str(value), quote=True)


def format_span(seconds: float) -> str:
    """A duration in its two largest units: ``8m 20s``, ``1h 2m``, ``3d 4h``, ``45s``."""
    left = max(0, int(seconds + 0.5))
    units = (("d", 86400), ("h", 3600), ("m", 60), ("s", 1))
    for i, (unit, size) in enumerate(units[:-1]):
        if left >= size:
            next_unit, next_size = units[i + 1]
            rest = (left % size) // next_size
            return f"{left // size}{unit} {rest}{next_unit}" if rest else f"{left // size}{unit}"
    return f"{left}s"


# Timestamps outside these years are shown as a dash (datetime cannot hold them).
_EARLIEST = datetime(1970, 1, 1, tzinfo=UTC).timestamp()
_LATEST = datetime(9999, 1, 1, tzinfo=UTC).timestamp()


def _clock_time(t: float, now: float) -> str:
    """``12:03:10 UTC``, with the date in front when it is not today's."""
    when = datetime.fromtimestamp(t, tz=UTC)
    today = datetime.fromtimestamp(now, tz=UTC).date()
    if when.date() == today:
        return when.strftime("%H:%M:%S UTC")
    return when.strftime("%Y-%m-%d %H:%M:%S UTC")


def _moment(value: object, now: float) -> str:
    """A past or future time, with how far it is: ``12:01:00 UTC (2m 10s ago)``."""
    t = _num(value)
    if t is None or not _EARLIEST <= t <= _LATEST:
        return _DASH
    if t <= now:
        return f"{_clock_time(t, now)} ({format_span(now - t)} ago)"
    return f"{_clock_time(t, now)} (in {format_span(t - now)})"


def _mark_state(until: float | None, now: float) -> tuple[str, str]:
    """(CSS class, text) of a back end's mark."""
    if until is None or until <= now:
        return "ok", "available"
    return "down", f"unavailable until {_moment(until, now)}"


def _mapping(value: object) -> Mapping[str, object]:
    return value if isinstance(value, Mapping) else {}


def _rows(value: object) -> Iterable[Mapping[str, object]]:
    if isinstance(value, list | tuple):
        return [row for row in value if isinstance(row, Mapping)]
    return []


def _backend_rows(data: Mapping[str, object], now: float) -> tuple[list[str], int]:
    """Table rows of every known back end (and marked server), and how many are down."""
    marks = {str(k).lower(): _num(v) for k, v in _mapping(data.get("marks")).items()}
    rows: list[str] = []
    down = 0
    listed: set[str] = set()
    for b in _rows(data.get("backends")):
        name = b.get("name")
        key = str(name).lower()
        listed.add(key)
        until = _num(b.get("unavailable_until"))
        if until is None:
            until = marks.get(key)
        css, state = _mark_state(until, now)
        if css == "down":
            down += 1
        rows.append(
            f'<tr class="{css}"><td>{_text(name)}</td><td>{_text(b.get("address"))}</td>'
            f"<td>{state}</td><td>{_text(b.get('last_status'))}</td>"
            f"<td>{_moment(b.get('last_seen'), now)}</td></tr>"
        )
    for key, until in sorted(marks.items()):
        if key not in listed and until is not None and until > now:
            css, state = _mark_state(until, now)
            down += 1
            rows.append(
                f'<tr class="{css}"><td>{_text(key)}</td><td>{_DASH}</td>'
                f"<td>{state}</td><td>{_DASH}</td><td>{_DASH}</td></tr>"
            )
    return rows, down


def _cache_rows(data: Mapping[str, object]) -> list[str]:
    """Table rows of every cache: entries, hits, misses, hit ratio."""
    rows: list[str] = []
    for c in _rows(data.get("caches")):
        hits, misses = _num(c.get("hits")), _num(c.get("misses"))
        ratio = _DASH
        if hits is not None and misses is not None and hits + misses > 0:
            ratio = f"{100 * hits / (hits + misses):.1f}%"
        rows.append(
            f"<tr><td>{_text(c.get('name'))}</td><td>{_text(c.get('entries'))}</td>"
            f"<td>{_text(c.get('hits'))}</td><td>{_text(c.get('misses'))}</td>"
            f"<td>{ratio}</td></tr>"
        )
    return rows


def _table(headings: tuple[str, ...], rows: list[str], empty: str) -> str:
    """An HTML table of ``rows`` (already escaped), or ``empty`` when there is none."""
    if not rows:
        return f"<p>{empty}</p>"
    head = "".join(f"<th>{h}</th>" for h in headings)
    return (
        f"<table><thead><tr>{head}</tr></thead><tbody>\n" + "\n".join(rows) + "\n</tbody></table>"
    )


_STYLE = """
body { font-family: sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; margin-bottom: 1.5em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.75em; text-align: left; }
th { background: #f0f0f0; }
tr.down td { background: #fde2e2; }
dt { font-weight: bold; float: left; clear: left; width: 11em; }
dd { margin-left: 12em; margin-bottom: 0.25em; }
"""


def render_status_html(data: Mapping[str, object], clock_now: float) -> str:
    """The status page for the status document ``data``.

    Times are shown relative to ``data["now"]`` when it is there, else to
    ``clock_now``.  Every value from ``data`` is escaped.
    """
    now = _num(data.get("now"))
    if now is None or not _EARLIEST <= now <= _LATEST:
        now = clock_now
    config = _mapping(data.get("config"))
    name = _text(data.get("name"))
    rows, down = _backend_rows(data, now)
    backends = _table(
        ("Server", "Address", "State", "Last status", "Last seen"), rows, "No back end known yet."
    )
    caches = _table(
        ("Cache", "Entries", "Hits", "Misses", "Hit ratio"), _cache_rows(data), "No cache."
    )
    facts = (
        ("Front end", name),
        ("Version", _text(data.get("version"))),
        ("Configuration", _text(config.get("path"))),
        ("Loaded", _moment(config.get("loaded_at"), now)),
        ("Started", _moment(data.get("started_at"), now)),
        ("Now", _clock_time(now, now)),
    )
    dl = "\n".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in facts)
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="refresh" content="30">
<title>feproxy {name}</title>
<style>{_STYLE}</style>
</head>
<body>
<h1>feproxy {name}</h1>
<dl>
{dl}
</dl>
<h2>Back ends ({down} unavailable)</h2>
{backends}
<h2>Caches</h2>
{caches}
<p><a href="/status.json">status.json</a> &middot; <a href="/metrics">metrics</a></p>
</body>
</html>
"""
