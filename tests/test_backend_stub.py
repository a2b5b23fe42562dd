"""Tests of the stub back-end farm: pure logic in memory, then the real process.

The process tests run ``python -m backend_stub`` (the session ``farm``) and
talk to it over loopback sockets with blocking clients.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from contextlib import closing, suppress
from pathlib import Path
from typing import Any, NamedTuple

import pytest

from backend_stub import topology as topo
from backend_stub.faults import Fault, FaultError, parse_fault
from backend_stub.records import BodyDigest, RequestHead, RequestLog, make_record
from backend_stub.routing import (
    EchoReply,
    StreamReply,
    TextReply,
    find_folder,
    request_path,
    route,
)
from backend_stub.streaming import PATTERN, PatternProducer, pattern_bytes
from tests.support.farm import DEFAULT_TOPOLOGY, REPO_ROOT, Farm, FarmError, free_port

# Fixtures farm, clean_farm: plugin tests.support.farm, listed in tests/conftest.py.

EX1, EX2, EX3, EX4 = (f"ex{n}.example.com" for n in range(1, 5))

# ---------------------------------------------------------------- in memory

_VALID: dict[str, Any] = {
    "port": 8080,
    "control": "127.0.0.1:8079",
    "servers": [
        {"name": "a.example.com", "address": "127.0.0.2", "mailboxes": ["alice"]},
        {"name": "b.example.com", "address": "127.0.0.3", "mailboxes": []},
    ],
    "folders": [{"path": "/apps/P", "content": "p\n", "servers": ["b.example.com"]}],
}

A = topo.ServerSpec("a.example.com", "127.0.0.2", ("alice",))
B = topo.ServerSpec("b.example.com", "127.0.0.3", ())
FOLDERS = (
    topo.FolderSpec("/apps/Projects", "projects\n", ("b.example.com",)),
    topo.FolderSpec("/apps/Projects/Secret", "secret\n", ("a.example.com",)),
    topo.FolderSpec("/public/News", "news\n", ("a.example.com", "b.example.com")),
)


def _with(path: str, value: object) -> dict[str, Any]:
    """A deep copy of _VALID with the dotted *path* set (or deleted if None)."""
    data: dict[str, Any] = json.loads(json.dumps(_VALID))
    *parents, last = path.split(".")
    target = data
    for key in parents:
        target = target[int(key)] if isinstance(target, list) else target[key]
    if value is None:
        del target[last]
    else:
        target[last] = value
    return data


def test_example_topology_loads_and_takes_overrides() -> None:
    """conf/topology.toml is valid; --port and --control override its values."""
    topology = topo.load_topology(DEFAULT_TOPOLOGY)
    assert [s.name for s in topology.servers] == [EX1, EX2, EX3, EX4]
    assert topology.server(EX3).address == "127.0.0.4"
    assert topology.server(EX1).mailboxes == ("alice", "carol")
    assert topology.folders[1].servers == (EX2, EX3, EX4)
    assert (topology.control_host, topology.control_port) == ("127.0.0.1", 8079)
    topology = topology.with_overrides(9000, ("127.0.0.1", 9001))  # the CLI options
    assert (topology.port, topology.control_port) == (9000, 9001)


@pytest.mark.parametrize(
    ("path", "value", "key"),
    [
        ("port", None, "port: missing"),
        ("port", "80", "port: expected an integer"),
        ("port", 70000, "port: port must be"),
        ("control", "10.0.0.1:8079", "control: must be a loopback"),
        ("control", "127.0.0.1", "control:"),
        ("servers", [], "servers: at least one"),
        ("servers.0.address", "ex1", "servers[0].address: expected an IPv4"),
        ("servers.1.address", "127.0.0.2", "servers[1].address: duplicate"),
        ("servers.1.name", "A.example.com", "servers[1].name: duplicate"),
        ("servers.0.adress", "127.0.0.9", "servers[0].adress: unknown key"),
        ("servers.1.mailboxes", ["Alice"], "servers[1].mailboxes: 'Alice' is also"),
        ("folders.0.servers", ["c.example.com"], "folders[0].servers: unknown server"),
        ("folders.0.path", "apps/P", "folders[0].path: expected an absolute"),
        ("folders.0.content", None, "folders[0].content: missing"),
    ],
)
def test_topology_error_names_the_key(path: str, value: object, key: str) -> None:
    """A bad topology raises a one-line error that starts with the key at fault."""
    with pytest.raises(topo.TopologyError) as info:
        topo.parse_topology(_with(path, value))
    message = str(info.value)
    assert message.startswith(key)
    assert "\n" not in message


def test_route_mailbox_here_or_404() -> None:
    """A mailbox alias matches in any case, with or without a domain; else 404."""
    assert route(A, FOLDERS, "/exchange/ALICE/Inbox", from_front_end=False) == (
        TextReply(200, "mailbox ALICE on a.example.com\n")
    )
    reply = route(A, FOLDERS, "/exchange/alice@example.com", from_front_end=False)
    assert isinstance(reply, TextReply)
    assert reply.status == 200
    assert route(B, FOLDERS, "/exchange/alice/", from_front_end=True) == TextReply(
        404, "no mailbox alice here\n"
    )


def test_find_folder_is_segment_wise_longest_prefix() -> None:
    """Folders match whole segments, and the deepest matching folder wins."""
    assert find_folder("/apps/Projects/sub/item.eml", FOLDERS) is FOLDERS[0]
    assert find_folder("/apps/Projects/Secret/x", FOLDERS) is FOLDERS[1]
    assert find_folder("/apps/ProjectsX", FOLDERS) is None
    assert find_folder("/apps", FOLDERS) is None
    assert find_folder("/apps/projects/", FOLDERS) is FOLDERS[0]
    assert request_path("/apps/Projects?x=1") == "/apps/Projects"
    assert request_path("http://h.example.com/apps/P?q") == "/apps/P"


def test_route_referral_only_from_front_end() -> None:
    """A folder held elsewhere is a 421 referral via a front end, else 404."""
    referral = route(A, FOLDERS, "/apps/Projects/x", from_front_end=True)
    assert referral == TextReply(
        421,
        "/apps/Projects is held by b.example.com\n",
        reason="Misdirected Request",
        headers=(("X-Replica-Servers", "b.example.com"),),
    )
    direct = route(A, FOLDERS, "/apps/Projects/x", from_front_end=False)
    assert isinstance(direct, TextReply)
    assert direct.status == 404
    held = route(B, FOLDERS, "/apps/Projects/x", from_front_end=True)
    assert held == TextReply(200, "projects\n")


def test_route_exchweb_bytes_and_echo() -> None:
    """/exchweb/bytes/N streams N bytes; other /exchweb paths echo; else 404."""
    assert route(A, (), "/exchweb/bytes/42", from_front_end=False) == StreamReply(42)
    assert route(A, (), "/exchweb/x/y", from_front_end=False) == EchoReply()
    bad = route(A, (), "/exchweb/bytes/1e3", from_front_end=False)
    assert isinstance(bad, TextReply)
    assert bad.status == 400
    missing = route(A, FOLDERS, "/nowhere", from_front_end=True)
    assert isinstance(missing, TextReply)
    assert missing.status == 404


def test_parse_fault_accepts_each_mode() -> None:
    """Each fault mode parses with its parameters and round-trips to JSON."""
    for body in (
        {"mode": "none"},
        {"mode": "refuse"},
        {"mode": "hang"},
        {"mode": "delay", "seconds": 1.5},
        {"mode": "cut", "after_bytes": 0},
    ):
        assert parse_fault(body).to_json() == body
    assert parse_fault({"mode": "delay", "seconds": 2}) == Fault("delay", seconds=2.0)


@pytest.mark.parametrize(
    "body",
    [
        None,
        {"mode": "explode"},
        {"mode": "delay"},
        {"mode": "delay", "seconds": -1},
        {"mode": "delay", "seconds": True},
        {"mode": "cut", "after_bytes": 1.5},
        {"mode": "none", "seconds": 1},
    ],
)
def test_parse_fault_rejects_bad_bodies(body: object) -> None:
    """Malformed fault bodies raise FaultError."""
    with pytest.raises(FaultError):
        parse_fault(body)


class _PausingConsumer:
    """A consumer that pauses its producer after every write."""

    def __init__(self) -> None:
        self.data: list[bytes] = []
        self.producer: PatternProducer | None = None

    def registerProducer(self, producer: object, *, streaming: bool) -> None:
        assert streaming
        assert isinstance(producer, PatternProducer)
        self.producer = producer

    def unregisterProducer(self) -> None:
        self.producer = None

    def write(self, data: bytes) -> None:
        self.data.append(data)
        assert self.producer is not None
        self.producer.pauseProducing()


@pytest.mark.parametrize("stop", [False, True])
def test_pattern_producer_honours_pause_and_stop(*, stop: bool) -> None:
    """One chunk per resume; exactly N pattern bytes, or none more once stopped."""
    consumer = _PausingConsumer()
    done: list[bool] = []
    producer = PatternProducer(consumer, 150_001, lambda: done.append(True))
    producer.start()
    assert len(consumer.data) == 1
    if stop:
        producer.stopProducing()
    for _ in range(5):
        producer.resumeProducing()
    if stop:
        assert len(consumer.data) == 1
        assert not done
    else:
        assert b"".join(consumer.data) == pattern_bytes(0, 150_001)
        assert done == [True]
        assert consumer.producer is None
        assert pattern_bytes(14, 4) == b"ef01"


def test_request_log_is_bounded_and_filters_by_server() -> None:
    """The record log keeps the newest records and filters by server."""
    log = RequestLog(limit=3)
    for n in range(5):
        server, uri, headers = EX1 if n % 2 else EX2, b"/%d" % n, [(b"hOST", b"h")]
        record = make_record(
            server=server,
            head=RequestHead(b"GET", uri, b"HTTP/1.1"),
            headers=headers,
            body=BodyDigest(),
            time=float(n),
        )
        log.add(record)
    assert [r["uri"] for r in log.list()] == ["/2", "/3", "/4"]
    assert [r["uri"] for r in log.list(EX1)] == ["/3"]
    assert log.list()[0]["host"] == "h"
    assert log.clear() == 3
    assert len(log) == 0


# ------------------------------------------------------------- real process


class _Reply(NamedTuple):
    """A response read by :func:`_call`."""

    status: int
    headers: dict[str, str]
    body: bytes


def _call(
    farm: Farm,
    server: str,
    method: str,
    path: str,
    headers: Mapping[str, str] | None = None,
    body: bytes | None = None,
) -> _Reply:
    """One request to *server* of *farm* on a fresh connection."""
    address = farm.address_of(server)
    with closing(http.client.HTTPConnection(address, farm.port, timeout=10)) as conn:
        conn.request(method, path, body=body, headers=dict(headers or {}))
        response = conn.getresponse()
        data = response.read()
        return _Reply(response.status, dict(response.getheaders()), data)


def _rss_kib(pid: int) -> int:
    """The resident set size of process *pid* in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_mailbox_served_by_its_server_404_elsewhere(clean_farm: Farm) -> None:
    """A mailbox is served (any method) by its server; another server says 404."""
    reply = _call(clean_farm, EX2, "PROPFIND", "/exchange/Bob/Inbox")
    assert reply.status == 200
    assert reply.body == b"mailbox Bob on ex2.example.com\n"
    assert reply.headers["X-Backend-Server"] == EX2
    reply = _call(clean_farm, EX1, "GET", "/exchange/bob/")
    assert (reply.status, reply.body) == (404, b"no mailbox bob here\n")
    assert reply.headers["X-Backend-Server"] == EX1


def test_folder_content_from_holder(clean_farm: Farm) -> None:
    """A replica holder serves the folder's content, also to a front end."""
    reply = _call(clean_farm, EX3, "GET", "/apps/Archive", {"X-Front-End-Server": "a"})
    assert reply.status == 200
    assert reply.body == b"Archive of 2003: minutes and reports.\n"


def test_referral_sent_only_to_front_end(clean_farm: Farm) -> None:
    """A non-holder refers a front end (421 + X-Replica-Servers), others get 404."""
    path = "/apps/Projects/sub/item.eml?cmd=x"
    referral = _call(clean_farm, EX1, "GET", path, {"X-Front-End-Server": "fe1"})
    assert referral.status == 421
    assert referral.headers["X-Replica-Servers"] == f"{EX2}, {EX3}, {EX4}"
    assert referral.headers["X-Backend-Server"] == EX1
    direct = _call(clean_farm, EX1, "GET", path)
    assert direct.status == 404
    assert "X-Replica-Servers" not in direct.headers


def test_folder_prefix_is_segment_wise(clean_farm: Farm) -> None:
    """/apps/ProjectsX is not inside /apps/Projects; /apps/Projects/a is."""
    inside = _call(clean_farm, EX2, "GET", "/apps/Projects/a/b")
    assert inside.body == b"Project list: Apollo, Gemini, Mercury.\n"
    outside = _call(clean_farm, EX2, "GET", "/apps/ProjectsX")
    assert outside.status == 404


def test_bytes_streams_n_bytes_with_flat_memory(clean_farm: Farm) -> None:
    """64 MiB stream with exact length and pattern while the stub's RSS stays flat."""
    size = 64 * 1024 * 1024
    step = 1024 * 1024
    expected = PATTERN * (step // len(PATTERN))
    baseline = _rss_kib(clean_farm.pid)
    peak = baseline
    address = clean_farm.address_of(EX4)
    with closing(http.client.HTTPConnection(address, clean_farm.port)) as conn:
        conn.request("GET", f"/exchweb/bytes/{size}")
        response = conn.getresponse()
        assert response.status == 200
        assert response.getheader("Content-Length") == str(size)
        received = 0
        while chunk := response.read(step):
            assert chunk == expected[: len(chunk)]
            received += len(chunk)
            if received % (8 * step) == 0:
                peak = max(peak, _rss_kib(clean_farm.pid))
    assert received == size
    assert peak - baseline < 16 * 1024, f"RSS grew by {peak - baseline} KiB"


def test_echo_returns_request_as_received(clean_farm: Farm) -> None:
    """/exchweb/... echoes method, uri, raw headers and the body hash as JSON."""
    body = b"x" * 1000
    headers = {"x-MiXed-Case": "one", "Content-Type": "text/plain"}
    reply = _call(clean_farm, EX3, "POST", "/exchweb/bin/echo?a=1", headers, body)
    echo = json.loads(reply.body)
    assert reply.headers["Content-Type"] == "application/json"
    assert echo["server"] == EX3
    assert echo["method"] == "POST"
    assert echo["uri"] == "/exchweb/bin/echo?a=1"
    assert ["x-MiXed-Case", "one"] in echo["headers"]
    assert echo["body_length"] == 1000
    assert echo["body_sha256"] == hashlib.sha256(body).hexdigest()


def test_records_propfind_with_body(clean_farm: Farm) -> None:
    """A PROPFIND is recorded with method, uri, raw Host, headers and body hash."""
    body = b'<?xml version="1.0"?><D:propfind xmlns:D="DAV:"><D:allprop/></D:propfind>'
    headers = {"Host": "Mail.Example.com", "X-Front-End-Server": "fe1", "Depth": "1"}
    reply = _call(clean_farm, EX1, "PROPFIND", "/public/Announcements/", headers, body)
    assert reply.status == 200
    [record] = clean_farm.requests(EX1)
    assert record["method"] == "PROPFIND"
    assert record["uri"] == "/public/Announcements/"
    assert record["host"] == "Mail.Example.com"
    assert ["X-Front-End-Server", "fe1"] in record["headers"]
    assert ["Depth", "1"] in record["headers"]
    assert record["body_length"] == len(body)
    assert record["body_sha256"] == hashlib.sha256(body).hexdigest()
    assert clean_farm.requests(EX2) == []


def test_fault_refuse_then_none_listens_again(clean_farm: Farm) -> None:
    """refuse closes the listener and open connections; none listens again."""
    address = (clean_farm.address_of(EX3), clean_farm.port)
    with socket.create_connection(address, timeout=5) as idle:
        assert clean_farm.set_fault(EX3, "refuse") == {"mode": "refuse"}
        # The open connection was dropped: closed, or reset as when a server dies.
        with suppress(ConnectionResetError):
            assert idle.recv(1) == b""
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(address, timeout=5).close()
    assert clean_farm.servers()[2]["fault"] == {"mode": "refuse"}
    clean_farm.set_fault(EX3, "none")
    assert _call(clean_farm, EX3, "GET", "/apps/Archive").status == 200


def test_fault_delay_holds_response_but_records_at_once(clean_farm: Farm) -> None:
    """delay holds the response for the given seconds; the record is immediate."""
    clean_farm.set_fault(EX2, "delay", seconds=0.5)
    address = (clean_farm.address_of(EX2), clean_farm.port)
    start = time.monotonic()
    with socket.create_connection(address, timeout=5) as sock:
        sock.sendall(b"GET /exchange/jose HTTP/1.1\r\nHost: x\r\n\r\n")
        while not clean_farm.requests(EX2):
            assert time.monotonic() - start < 0.4, "request not recorded in time"
            time.sleep(0.02)
        head = sock.recv(65536)
    assert time.monotonic() - start >= 0.5
    assert head.startswith(b"HTTP/1.1 200 ")


def test_fault_cut_sends_fewer_bytes_than_content_length(clean_farm: Farm) -> None:
    """cut sends the full Content-Length, after_bytes of body, then closes."""
    clean_farm.set_fault(EX4, "cut", after_bytes=1000)
    address = clean_farm.address_of(EX4)
    with closing(http.client.HTTPConnection(address, clean_farm.port)) as conn:
        conn.request("GET", "/exchweb/bytes/100000")
        response = conn.getresponse()
        assert response.getheader("Content-Length") == "100000"
        with pytest.raises(http.client.IncompleteRead) as info:
            response.read()
    assert info.value.partial == pattern_bytes(0, 1000)
    assert [r["uri"] for r in clean_farm.requests(EX4)] == ["/exchweb/bytes/100000"]


def test_fault_none_restores_service(clean_farm: Farm) -> None:
    """Setting none after a fault serves whole responses again."""
    clean_farm.set_fault(EX4, "cut", after_bytes=0)
    clean_farm.set_fault(EX4, "none")
    assert len(_call(clean_farm, EX4, "GET", "/exchweb/bytes/100000").body) == 100000


def test_fault_hang_sends_headers_only(clean_farm: Farm) -> None:
    """hang sends status and headers, then nothing."""
    clean_farm.set_fault(EX1, "hang")
    address = clean_farm.address_of(EX1)
    with closing(http.client.HTTPConnection(address, clean_farm.port, timeout=0.5)) as c:
        c.request("GET", "/exchange/carol")
        response = c.getresponse()
        assert response.status == 200
        with pytest.raises(TimeoutError):
            response.read(1)


def test_control_rejects_unknown_server_and_bad_body(clean_farm: Farm) -> None:
    """PUT /faults answers 404 for an unknown server and 400 for a bad body."""
    with pytest.raises(FarmError) as unknown:
        clean_farm.set_fault("ex9.example.com", "none")
    assert unknown.value.status == 404
    with pytest.raises(FarmError) as bad:
        clean_farm.set_fault(EX1, "cut")
    assert bad.value.status == 400
    assert "after_bytes" in str(bad.value)


def _run_stub(*args: str) -> subprocess.CompletedProcess[str]:
    """Run ``python -m backend_stub`` to completion."""
    command = [sys.executable, "-m", "backend_stub", *args]
    return subprocess.run(
        command, capture_output=True, text=True, cwd=REPO_ROOT, timeout=15, check=False
    )


def test_bad_topology_exits_nonzero_naming_the_key(tmp_path: Path) -> None:
    """A bad topology file exits non-zero with one line naming the key."""
    bad = tmp_path / "bad.toml"
    bad.write_text(DEFAULT_TOPOLOGY.read_text().replace('"127.0.0.4"', '"ex3"'))
    result = _run_stub("--topology", str(bad))
    assert result.returncode != 0
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1
    assert "servers[2].address" in result.stderr


def test_address_in_use_exits_nonzero() -> None:
    """A server address already in use exits non-zero with a one-line message."""
    port = free_port()
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.3", port))
        squatter.listen()
        control = f"127.0.0.1:{free_port(exclude={port})}"
        topology = str(DEFAULT_TOPOLOGY)
        result = _run_stub("--topology", topology, "--port", str(port), "--control", control)
    assert result.returncode != 0
    assert result.stderr.count("\n") == 1
    assert f"127.0.0.3:{port}" in result.stderr


def test_sigterm_stops_cleanly_and_requests_are_logged() -> None:
    """SIGTERM exits 0; each request was logged on stderr with its status."""
    port = free_port()
    with Farm.start(str(DEFAULT_TOPOLOGY), port, free_port(exclude={port})) as second:
        assert _call(second, EX1, "GET", "/exchange/alice").status == 200
        assert second.stop() == 0
    assert f"{EX1} GET /exchange/alice 200" in second.log_text()
