"""The access log: the combined format with the back end and the request
time appended, its escaping, its JSON form, and goaccess reading it."""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from frontend.loadtest.slapd import Slapd
from frontend.proxy.accesslog import (
    JSON_FIELDS,
    access_event,
    access_json,
    format_access,
)
from frontend.proxy.accesslog import _LocalTime as LocalTime
from tests.support.farm import Farm, free_port
from tests.support.serve import ROOT, ServeProcess
from tests.test_end_to_end import fe_config, get

#: One access line, field by field (the README's description of it).
LINE = re.compile(
    r"(?P<client>\S+) - (?P<user>\S+) \[(?P<time>\d\d/\w{3}/\d{4}:\d\d:\d\d:\d\d [+-]\d{4})\] "
    r'"(?P<request>[^"]*)" (?P<status>\d{3}) (?P<bytes>\d+) "(?P<referer>[^"]*)" '
    r'"(?P<agent>[^"]*)" (?P<upstream>\S+) (?P<time_taken>\d+\.\d{3})\n\Z'
)
#: goaccess' reading of it: nginx's combined format, the user read too, the
#: upstream skipped, the request time in seconds (README, Operations).
GOACCESS_FORMAT = '%h %^ %e [%d:%t %^] "%r" %s %b "%R" "%u" %^ %T'


@pytest.fixture
def utc(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def event(**fields: object) -> dict[str, Any]:
    base: dict[str, Any] = {
        "client": "127.0.0.1",
        "user": "alice",
        "method": b"GET",
        "target": b"/exchange/",
        "version": b"HTTP/1.1",
        "headers": [(b"Host", b"x"), (b"User-Agent", b"curl/8.5.0")],
        "backend": "ex1.example.com",
        "upstream": "127.0.0.2:80",
        "vdir": "/exchange",
        "status": 200,
        "bytes": 1234,
        "complete": True,
        "duration": 0.0123,
    }
    e = access_event(**{**base, **fields})
    e["log_time"] = 1796020200.5  # 30/Nov/2026:06:30:00 UTC
    return e


# -- in memory --------------------------------------------------------------


@pytest.mark.usefixtures("utc")
def test_line_is_combined_format_with_upstream_and_request_time() -> None:
    """The line is nginx's combined format followed by $upstream_addr and $request_time."""
    assert format_access(event()) == (
        b'127.0.0.1 - alice [30/Nov/2026:06:30:00 +0000] "GET /exchange/ HTTP/1.1" 200 1234 '
        b'"-" "curl/8.5.0" 127.0.0.2:80 0.012\n'
    )


@pytest.mark.usefixtures("utc")
def test_absent_user_referer_agent_and_back_end_are_dashes() -> None:
    """No user, no Referer, no User-Agent and no back end are each written '-'."""
    line = format_access(event(user=None, headers=[], upstream=None, backend=None, bytes=0))
    assert line == (
        b'127.0.0.1 - - [30/Nov/2026:06:30:00 +0000] "GET /exchange/ HTTP/1.1" 200 0 '
        b'"-" "-" - 0.012\n'
    )


@pytest.mark.usefixtures("utc")
def test_referer_and_agent_are_the_first_of_their_headers_whatever_the_case() -> None:
    """Referer and User-Agent are found case-insensitively, the first of each."""
    headers = [(b"REFERER", b"http://a/"), (b"user-agent", b"ua1"), (b"Referer", b"http://b/")]
    line = format_access(event(headers=[*headers, (b"User-Agent", b"ua2")]))
    assert b' "http://a/" "ua1" ' in line


def test_a_request_without_answer_is_logged_499() -> None:
    """A request the client left before any answer (status 0) is logged 499, as by nginx."""
    assert b'" 499 0 "' in format_access(event(status=0, bytes=0))
    assert json.loads(access_json(event(status=0)))["status"] == 499


def test_hostile_bytes_are_escaped_so_no_line_or_field_can_be_forged() -> None:
    """'"', '\\', control bytes and bytes above 126 in quoted fields become \\xHH,
    as nginx writes them; a user's space too; the line stays one line of ten fields."""
    line = format_access(
        event(
            user="José Núñez",
            target=b'/a"b\\c',
            headers=[
                (b"Referer", b'x" 200 1 "-'),
                (b"User-Agent", b'evil\r\n127.0.0.1 - - [x] "GET / HTTP/1.1"\t\x7f\xc3\xa9'),
            ],
        )
    )
    assert line.count(b"\n") == 1
    fields = LINE.match(line.decode("ascii"))
    assert fields is not None, line
    assert fields["user"] == r"Jos\xC3\xA9\x20N\xC3\xBA\xC3\xB1ez"
    assert fields["request"] == r"GET /a\x22b\x5Cc HTTP/1.1"
    assert fields["referer"] == r"x\x22 200 1 \x22-"
    assert fields["agent"] == (
        r"evil\x0D\x0A127.0.0.1 - - [x] \x22GET / HTTP/1.1\x22\x09\x7F\xC3\xA9"
    )


def test_local_time_carries_its_offset() -> None:
    """The time is local, with the zone's offset, as nginx's $time_local."""
    previous = time.tzname
    try:
        with pytest.MonkeyPatch.context() as m:
            m.setenv("TZ", "XST+05:30")  # 5 h 30 min west of UTC
            time.tzset()
            assert LocalTime()(1796020200.5) == b"30/Nov/2026:01:00:00 -0530"
            m.setenv("TZ", "YST-01")
            time.tzset()
            assert LocalTime()(1796020200.5) == b"30/Nov/2026:07:30:00 +0100"
    finally:
        time.tzset()
    assert time.tzname == previous


def test_json_line_holds_the_same_fields_under_stable_names() -> None:
    """A JSON access line has every documented field, decoded, besides twisted.logger's."""
    line = access_json(event(headers=[(b"Referer", b"http://r/"), (b"User-Agent", "é".encode())]))
    assert line.endswith(b"\n")
    assert line.count(b"\n") == 1
    record = json.loads(line)
    assert {k: record[k] for k in JSON_FIELDS} == {
        "client": "127.0.0.1",
        "user": "alice",
        "method": "GET",
        "path": "/exchange/",
        "version": "HTTP/1.1",
        "status": 200,
        "bytes": 1234,
        "referer": "http://r/",
        "user_agent": "é",
        "backend": "ex1.example.com",
        "upstream": "127.0.0.2:80",
        "vdir": "/exchange",
        "complete": True,
        "duration": 0.0123,
    }
    assert record["log_namespace"] == "feproxy.access"
    assert record["log_time"] == 1796020200.5
    assert "headers" not in record  # never the request's headers (credentials)


# -- goaccess reads it -------------------------------------------------------


def goaccess() -> str:
    found = shutil.which("goaccess")
    assert found, "goaccess is missing: scripts/install-log-tools installs it"
    return found


def raw_request(port: int, data: bytes) -> bytes:
    """Send ``data`` on a new connection, return what came back until it closed."""
    with socket.create_connection(("127.0.0.1", port), timeout=15) as s:
        s.sendall(data)
        chunks = []
        while chunk := s.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def wait_lines(path: Path, count: int) -> list[str]:
    deadline = time.monotonic() + 30
    while True:
        lines = path.read_text(encoding="ascii").splitlines(keepends=True) if path.exists() else []
        if len(lines) >= count:
            return lines
        assert time.monotonic() < deadline, f"{len(lines)} of {count} lines in {path}"
        time.sleep(0.05)


def test_goaccess_reads_every_line_with_its_status_and_bytes(
    clean_farm: Farm, slapd: Slapd, tmp_path: Path
) -> None:
    """goaccess, given the README's format, parses every line a real feproxy serve wrote
    (200s, 401, 404, 502, HEAD, hostile path and User-Agent) and counts the same
    statuses and bytes."""
    port = free_port()
    config = fe_config(tmp_path / "fe.toml", port, clean_farm, slapd)
    access = tmp_path / "access.log"
    expected: list[tuple[int, int]] = []  # (status, body bytes) per request, in order
    with ServeProcess.start(config, ("127.0.0.1", port), "--access-log", str(access)):
        for user, password, method, path in [
            ("alice", "alice-pw", "GET", "/exchange/"),
            ("bob", "bob-pw", "GET", "/exchange/bob/"),
            ("alice", "wrong", "GET", "/exchange/"),
            ("alice", "alice-pw", "GET", "/exchange/nobody/"),
            ("alice", "alice-pw", "HEAD", "/exchange/"),
            (None, None, "GET", "/exchweb/echo?q=1"),
        ]:
            status, _, body = get(port, path, user, password, method)
            expected.append((status, len(body)))
        answer = raw_request(
            port,
            b'GET /exchweb/echo?a="b"\\c HTTP/1.1\r\nHost: x\r\nConnection: close\r\n'
            b'Referer: http://r/"x\r\nUser-Agent: evil" 200 1 "\\ \xc3\xa9\t\r\n\r\n',
        )
        head, _, body = answer.partition(b"\r\n\r\n")
        expected.append((int(head.split()[1]), len(body)))
        clean_farm.set_fault("ex1.example.com", "garbage")
        try:
            status, _, body = get(port, "/exchweb/echo?broken=1")
            expected.append((status, len(body)))
        finally:
            clean_farm.set_fault("ex1.example.com", "none")
        lines = wait_lines(access, len(expected))
    assert [s for s, _ in expected] == [200, 200, 401, 404, 200, 200, 200, 502]
    assert expected[4][1] == 0  # HEAD: no body
    assert len(lines) == len(expected)
    for line in lines:
        assert LINE.match(line), line
    assert " alice " in lines[0]
    assert lines[-1].split()[-2] == "-"  # the 502: no back end answered
    assert " 127.0.0.2:" in lines[0]  # ex1's address and the farm's port

    assert GOACCESS_FORMAT in (ROOT / "README.md").read_text(encoding="utf-8")
    done = subprocess.run(
        [
            *(goaccess(), str(access), "--no-global-config", "--log-format", GOACCESS_FORMAT),
            *("--date-format", "%d/%b/%Y", "--time-format", "%T", "-o", "json"),
        ],
        capture_output=True,
        timeout=60,
        check=True,
    )
    report = json.loads(done.stdout)
    general = report["general"]
    assert general["total_requests"] == len(expected)
    assert general["valid_requests"] == len(expected)
    assert general["failed_requests"] == 0
    assert general["bandwidth"] == sum(b for _, b in expected)
    by_status: dict[int, tuple[int, int]] = {}
    for group in report["status_codes"]["data"]:
        for item in group["items"]:
            status = int(item["data"].split()[0])
            by_status[status] = (item["hits"]["count"], item["bytes"]["count"])
    want: dict[int, tuple[int, int]] = {}
    for status, size in expected:
        hits, total = want.get(status, (0, 0))
        want[status] = (hits + 1, total + size)
    assert by_status == want
    users = {u["data"]: u["hits"]["count"] for u in report["remote_user"]["data"]}
    assert users == {"alice": 3, "bob": 1, "-": 4}  # a wrong password: no user
