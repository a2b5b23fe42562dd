"""The admin listener: /metrics, /status(.json) and the HTML status page, over StubTreq."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from typing import Any, cast

import pytest
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,
)
from prometheus_client.parser import text_string_to_metric_families
from treq.testing import StubTreq
from twisted.logger import ILogObserver, LogEvent, globalLogPublisher
from twisted.python.failure import Failure
from twisted.web.iweb import IResponse

from frontend.ops.admin import admin_resource, format_span, render_status_html
from frontend.ops.metrics import Metrics

NOW = datetime(2025, 11, 21, 11, 54, 50, tzinfo=UTC).timestamp()
HOSTILE = '<script>alert("x")</script>'


def _status() -> dict[str, Any]:
    return {
        "version": "0.1.0",
        "name": "fe1.example.com",
        "config": {"path": "/etc/feproxy/feproxy.toml", "loaded_at": NOW - 125},
        "started_at": NOW - 3 * 86400 - 7200,
        "now": NOW,
        "backends": [
            {
                "name": "ex1.example.com",
                "address": "127.0.0.2",
                "unavailable_until": None,
                "last_status": 200,
                "last_seen": NOW - 2,
            },
            {
                "name": "ex3.example.com",
                "address": None,
                "unavailable_until": NOW + 500,
                "last_status": None,
                "last_seen": None,
            },
        ],
        "caches": [{"name": "user", "entries": 3, "hits": 10, "misses": 3}],
        "marks": {"ex3.example.com": NOW + 500},
    }


def _fetch(
    method: str,
    path: str,
    *,
    status: Callable[[], Mapping[str, Any]] = _status,
    metrics: Metrics | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[Any, bytes]:
    """(response, body) of one request to the admin resource."""
    # StubTreq makes its request methods at run time: typed Any for mypy.
    treq: Any = StubTreq(admin_resource(metrics or Metrics(), status, clock=lambda: NOW))
    got: list[Any] = []
    treq.request(method, "http://admin" + path, headers=headers).addBoth(got.append)
    treq.flush()
    assert got, "no response"
    assert not isinstance(got[0], Failure), got
    body: list[Any] = []
    treq.content(got[0]).addBoth(body.append)
    treq.flush()
    assert body, "no body"
    assert isinstance(body[0], bytes), body
    return got[0], body[0]


def _header(response: IResponse, name: str) -> str | None:
    values = response.headers.getRawHeaders(name.encode())
    return values[0].decode() if values else None


def test_metrics_endpoint_serves_parseable_prometheus_text() -> None:
    """GET /metrics answers text/plain version 0.0.4 that the Prometheus parser reads."""
    m = Metrics()
    m.request_finished("/exchange", 200, "ex1.example.com", 0.01)
    response, body = _fetch("GET", "/metrics", metrics=m)
    assert response.code == 200
    assert _header(response, "content-type") == "text/plain; version=0.0.4; charset=utf-8"
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for f in text_string_to_metric_families(body.decode())
        for s in f.samples
    }
    key = (
        "feproxy_requests_total",
        (("backend", "ex1.example.com"), ("status", "200"), ("vdir", "/exchange")),
    )
    assert samples[key] == 1


def test_metrics_endpoint_answers_openmetrics_when_asked() -> None:
    """A scraper that accepts OpenMetrics gets it, with its content type and # EOF."""
    m = Metrics()
    m.referral_followed("/apps")
    accept = "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"
    response, body = _fetch("GET", "/metrics", metrics=m, headers={"Accept": accept})
    content_type = _header(response, "content-type")
    assert content_type is not None
    assert content_type.startswith("application/openmetrics-text; version=1.0.0")
    assert body.endswith(b"# EOF\n")
    families = {f.name: f for f in openmetrics_families(body.decode())}
    assert families["feproxy_referrals"].samples[0].value == 1


@pytest.mark.parametrize("path", ["/status", "/status.json"])
def test_status_json_round_trips_the_status_document(path: str) -> None:
    """/status and /status.json answer status() as application/json, unchanged."""
    response, body = _fetch("GET", path)
    assert response.code == 200
    assert _header(response, "content-type") == "application/json"
    assert json.loads(body) == _status()


@pytest.mark.parametrize("path", ["/", "/status.html"])
def test_status_page_shows_backends_marks_caches_and_config(path: str) -> None:
    """The HTML page lists version, config and load time, each back end's mark, cache sizes."""
    response, body = _fetch("GET", path)
    assert response.code == 200
    assert _header(response, "content-type") == "text/html; charset=utf-8"
    page = body.decode()
    assert "0.1.0" in page
    assert "fe1.example.com" in page
    assert "/etc/feproxy/feproxy.toml" in page
    assert "11:52:45 UTC (2m 5s ago)" in page  # config loaded_at
    assert "ex1.example.com" in page
    assert "127.0.0.2" in page
    assert "unavailable until 12:03:10 UTC (in 8m 20s)" in page
    assert "Back ends (1 unavailable)" in page
    assert "<td>user</td><td>3</td><td>10</td><td>3</td><td>76.9%</td>" in page
    assert "<script" not in page.lower()


def test_status_page_lists_marked_servers_missing_from_backends() -> None:
    """A mark on a server not in the back-end list still shows, with its expiry."""
    status = {"now": NOW, "marks": {"EX9.example.com": NOW + 60, "ex8.example.com": NOW - 1}}
    page = render_status_html(status, 0.0)
    assert "ex9.example.com" in page
    assert "unavailable until 11:55:50 UTC (in 1m)" in page
    assert "ex8.example.com" not in page  # expired


def test_status_page_escapes_hostile_names_from_the_directory() -> None:
    """A back end, cache, mark or config path named <script> is shown escaped, never as HTML."""

    def status() -> dict[str, Any]:
        s = _status()
        s["name"] = HOSTILE
        s["version"] = HOSTILE
        s["config"]["path"] = HOSTILE
        s["backends"][0]["name"] = HOSTILE
        s["backends"][0]["address"] = HOSTILE
        s["backends"][0]["last_status"] = HOSTILE
        s["caches"][0]["name"] = HOSTILE
        s["marks"] = {HOSTILE + "2": NOW + 60}
        return s

    _, body = _fetch("GET", "/", status=status)
    page = body.decode()
    assert "<script" not in page.lower()
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in page


def test_status_page_forbids_scripts_by_content_security_policy() -> None:
    """The HTML page carries a CSP without script sources, and pages are not cached."""
    response, _ = _fetch("GET", "/status.html")
    csp = _header(response, "content-security-policy")
    assert csp is not None
    assert "default-src 'none'" in csp
    assert "script" not in csp
    assert _header(response, "cache-control") == "no-store"
    assert _header(response, "x-content-type-options") == "nosniff"


@pytest.mark.parametrize(
    "status",
    [
        {},
        {"backends": "nonsense", "caches": None, "marks": [1, 2], "config": "x", "now": "noon"},
        {"backends": [{"unavailable_until": "soon"}, 7], "caches": [{"hits": True}]},
        {"now": NOW, "started_at": float("nan"), "backends": [{"name": "a", "last_seen": 1e300}]},
        {"now": -1e300, "config": {"loaded_at": -5.0}, "marks": {"x": 1e300}},
    ],
)
def test_status_page_survives_missing_and_odd_keys(status: dict[str, Any]) -> None:
    """Whatever the status document lacks or holds wrongly, the page still renders."""
    response, body = _fetch("GET", "/", status=lambda: status)
    assert response.code == 200
    assert b"<h1>feproxy" in body


def test_failing_status_gives_500_and_is_logged() -> None:
    """An exception in status() is a one-line 500 for the client and a logged failure."""
    events: list[LogEvent] = []
    observer = cast(ILogObserver, events.append)
    globalLogPublisher.addObserver(observer)

    def broken() -> dict[str, Any]:
        raise RuntimeError("boom")

    try:
        for path in ("/status", "/"):
            response, body = _fetch("GET", path, status=broken)
            assert response.code == 500
            assert body == b"500 The status is not available.\n"
            assert b"boom" not in body
    finally:
        globalLogPublisher.removeObserver(observer)
    assert any("log_failure" in e and e["log_failure"].check(RuntimeError) for e in events)


@pytest.mark.parametrize("path", ["/metrics/", "/nothing", "/status.htm", "/status/x", "/metricsx"])
def test_unknown_paths_are_404(path: str) -> None:
    """Only the five known paths exist; anything else is a plain 404."""
    response, body = _fetch("GET", path)
    assert response.code == 404
    assert body == b"404 Not found.\n"
    assert _header(response, "content-type") == "text/plain; charset=utf-8"


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "OPTIONS", "PROPFIND"])
@pytest.mark.parametrize("path", ["/metrics", "/status", "/"])
def test_methods_other_than_get_and_head_are_405(method: str, path: str) -> None:
    """Known paths refuse other methods with 405 and Allow: GET, HEAD."""
    response, body = _fetch(method, path)
    assert response.code == 405
    assert _header(response, "allow") == "GET, HEAD"
    assert body == b"405 Method not allowed.\n"


@pytest.mark.parametrize("path", ["/metrics", "/status.json", "/status.html"])
def test_head_answers_headers_without_a_body(path: str) -> None:
    """HEAD is answered like GET, with no body."""
    response, body = _fetch("HEAD", path)
    assert response.code == 200
    assert body == b""
    assert _header(response, "content-type") is not None


def test_query_strings_do_not_change_the_page() -> None:
    """/status.json?x=1 is /status.json."""
    response, body = _fetch("GET", "/status.json?refresh=1")
    assert response.code == 200
    assert json.loads(body)["name"] == "fe1.example.com"


def _spans() -> Iterator[tuple[float, str]]:
    yield from [
        (0, "0s"),
        (0.4, "0s"),
        (59, "59s"),
        (60, "1m"),
        (500, "8m 20s"),
        (3600, "1h"),
        (3725, "1h 2m"),
        (3605, "1h"),
        (86400 + 59, "1d"),
        (3 * 86400 + 7200 + 5, "3d 2h"),
        (-5, "0s"),
    ]


@pytest.mark.parametrize(("seconds", "text"), list(_spans()))
def test_format_span_shows_the_two_largest_units(seconds: float, text: str) -> None:
    """Durations read as '8m 20s', '1h 2m', '3d 2h'."""
    assert format_span(seconds) == text


def test_times_on_another_day_show_their_date() -> None:
    """A time on another UTC day than now carries its date; today's time does not."""
    page = render_status_html({"now": NOW, "started_at": NOW - 3 * 86400 - 7200}, 0.0)
    assert "2025-11-18 09:54:50 UTC (3d 2h ago)" in page
    assert "<dd>11:54:50 UTC</dd>" in page
