"""Request bodies at the stub farm: digested as they arrive (never spooled),
recorded even when cut short, and taken in by PUT/POST sinks.

In memory first (tests.support.stub_memory), then over loopback: the
session farm, and a farm of its own for the memory test.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import socket
import time
from contextlib import closing
from io import BytesIO

from backend_stub.channel import PREFIX_LIMIT, StubRequest
from backend_stub.records import BodyDigest
from backend_stub.routing import Reply, SinkReply, TextReply, route
from backend_stub.topology import ServerSpec, load_topology
from frontend.loadtest.procs import memory_kib
from tests.support.farm import DEFAULT_TOPOLOGY, Farm, free_port
from tests.support.stub_memory import MemoryServer

EX1, EX2, EX3 = "ex1.example.com", "ex2.example.com", "ex3.example.com"
TOPOLOGY = load_topology(DEFAULT_TOPOLOGY)

# ---------------------------------------------------------------- in memory


def test_route_put_and_post_into_held_mailbox_or_folder_are_sinks() -> None:
    """PUT (201) and POST (200) into a mailbox or folder held here are uploads;
    other methods, and paths held elsewhere, answer as before."""
    ex1, ex3 = TOPOLOGY.server(EX1), TOPOLOGY.server(EX3)
    folders = TOPOLOGY.folders

    def reply(server: ServerSpec, path: str, method: str) -> Reply:
        return route(server, folders, path, from_front_end=True, method=method)

    assert reply(ex1, "/exchange/Alice/Inbox/a.eml", "PUT") == SinkReply(
        201, "mailbox Alice", "Created"
    )
    assert reply(ex1, "/exchange/alice/", "POST") == SinkReply(200, "mailbox alice", "OK")
    assert reply(ex3, "/apps/Archive/new.eml", "PUT") == SinkReply(
        201, "folder /apps/Archive", "Created"
    )
    assert reply(ex1, "/exchange/alice/", "PROPFIND") == TextReply(
        200, "mailbox alice on ex1.example.com\n"
    )
    elsewhere = reply(ex3, "/exchange/alice/a.eml", "PUT")
    assert isinstance(elsewhere, TextReply)
    assert elsewhere.status == 404
    referral = reply(ex1, "/apps/Archive/new.eml", "PUT")
    assert isinstance(referral, TextReply)
    assert referral.status == 421


def test_body_digest_counts_and_hashes_chunks() -> None:
    """The running digest equals the digest of the whole body."""
    digest = BodyDigest()
    for chunk in (b"abc", b"", b"d" * 70000):
        digest.update(chunk)
    assert digest.length == 70003
    assert not digest.complete
    assert digest.sha256 == hashlib.sha256(b"abc" + b"d" * 70000).hexdigest()


def test_request_body_is_never_spooled_past_its_prefix() -> None:
    """A 1 MiB body of unknown length is digested; only 64 KiB stay in memory."""
    conn = MemoryServer().connect()
    request = StubRequest(conn.channel)
    request.gotLength(None)
    body = os.urandom(1024 * 1024)
    for start in range(0, len(body), 10000):
        request.handleContentChunk(body[start : start + 10000])
    assert isinstance(request.content, BytesIO)
    assert PREFIX_LIMIT == 64 * 1024
    assert request.content.getvalue() == body[: 64 * 1024]
    assert request.body.length == len(body)
    assert request.body.sha256 == hashlib.sha256(body).hexdigest()


def test_chunked_upload_is_digested_and_complete() -> None:
    """A chunked PUT is recorded with its decoded length, hash and body_complete."""
    memory = MemoryServer(EX1)
    conn = memory.connect()
    conn.send(b"PUT /exchange/carol/a.eml HTTP/1.1\r\nHost: m\r\n")
    conn.send(b"Transfer-Encoding: chunked\r\n\r\n")
    conn.send(b"5\r\nhello\r\n")
    conn.send(b"6\r\n world\r\n0\r\n\r\n")
    answer = conn.take()
    assert answer.startswith(b"HTTP/1.1 201 Created\r\n")
    sha = hashlib.sha256(b"hello world").hexdigest()
    assert answer.endswith(f"received 11 bytes, sha256 {sha}\n".encode())
    [record] = memory.records
    assert (record["body_length"], record["body_sha256"]) == (11, sha)
    assert record["body_complete"] is True


def test_connection_lost_mid_body_is_recorded_incomplete() -> None:
    """A request whose connection goes mid-body is recorded then, body_complete False."""
    memory = MemoryServer(EX1)
    conn = memory.connect()
    conn.send(b"PUT /exchange/alice/a.eml HTTP/1.1\r\nHost: m\r\nContent-Length: 100\r\n\r\n")
    conn.send(b"x" * 60)
    assert memory.records == []
    conn.lose()
    [record] = memory.records
    assert (record["method"], record["uri"]) == ("PUT", "/exchange/alice/a.eml")
    assert record["body_length"] == 60
    assert record["body_complete"] is False
    assert record["body_sha256"] == hashlib.sha256(b"x" * 60).hexdigest()


def test_connection_lost_in_the_head_leaves_no_record() -> None:
    """A request whose head never ended is no request: nothing is recorded."""
    memory = MemoryServer(EX1)
    conn = memory.connect()
    conn.send(b"PUT /exchange/alice/a.eml HTTP/1.1\r\nHost: m\r\n")
    conn.lose()
    assert memory.records == []


# ------------------------------------------------------------- real process


def _put(farm: Farm, server: str, method: str, path: str, body: bytes) -> tuple[int, bytes]:
    address = farm.address_of(server)
    with closing(http.client.HTTPConnection(address, farm.port, timeout=10)) as conn:
        conn.request(method, path, body=body)
        response = conn.getresponse()
        return response.status, response.read()


def test_put_and_post_sinks_name_length_and_sha256(clean_farm: Farm) -> None:
    """PUT into a mailbox or a held folder answers 201, POST 200, each naming
    the byte count and SHA-256 received."""
    body = os.urandom(300_000)
    text = f"received 300000 bytes, sha256 {hashlib.sha256(body).hexdigest()}\n".encode()
    status, answer = _put(clean_farm, EX2, "PUT", "/exchange/bob/Drafts/a.eml", body)
    assert (status, answer) == (201, b"mailbox bob on ex2.example.com: " + text)
    status, answer = _put(clean_farm, EX2, "POST", "/exchange/jose/", body)
    assert (status, answer) == (200, b"mailbox jose on ex2.example.com: " + text)
    status, answer = _put(clean_farm, EX3, "PUT", "/apps/Archive/2004.eml", body)
    assert (status, answer) == (201, b"folder /apps/Archive on ex3.example.com: " + text)
    records = clean_farm.requests()
    assert [r["body_length"] for r in records] == [300_000] * 3
    assert all(r["body_complete"] for r in records)


def test_truncated_upload_over_loopback_is_recorded_incomplete(clean_farm: Farm) -> None:
    """A real server records an upload cut short once the connection is gone."""
    address = (clean_farm.address_of(EX1), clean_farm.port)
    with socket.create_connection(address, timeout=10) as sock:
        sock.sendall(b"PUT /exchange/alice/a.eml HTTP/1.1\r\nHost: m\r\nContent-Length: 5000\r\n")
        sock.sendall(b"\r\n")
        sock.sendall(b"y" * 3000)
    deadline = time.monotonic() + 10
    while not (records := clean_farm.requests(EX1)):
        assert time.monotonic() < deadline, "no record of the truncated upload"
        time.sleep(0.05)
    [record] = records
    assert (record["body_length"], record["body_complete"]) == (3000, False)
    assert "PUT /exchange/alice/a.eml - (connection lost after 3000 body bytes)" in (
        clean_farm.log_text()
    )


def test_256_mib_upload_keeps_the_farm_rss_flat() -> None:
    """256 MiB streamed into a farm server grow its peak RSS by less than 32 MiB,
    and its record has the exact length and SHA-256."""
    size, block = 256 * 1024 * 1024, os.urandom(1024 * 1024)
    expected = hashlib.sha256()
    port = free_port()
    with Farm.start(str(DEFAULT_TOPOLOGY), port, free_port(exclude={port})) as farm:
        assert _put(farm, EX1, "PUT", "/exchange/alice/warm.eml", block)[0] == 201
        baseline = memory_kib(farm.pid)
        address = (farm.address_of(EX1), farm.port)
        with socket.create_connection(address, timeout=30) as sock:
            head = b"PUT /exchange/alice/big.eml HTTP/1.1\r\nHost: m\r\nContent-Length: %d\r\n\r\n"
            sock.sendall(head % size)
            for _ in range(size // len(block)):
                sock.sendall(block)
                expected.update(block)
            answer = b""
            while not answer.endswith(b"\n"):
                data = sock.recv(65536)
                assert data, f"connection closed after {answer!r}"
                answer += data
        growth = memory_kib(farm.pid, "VmHWM") - baseline
        record = farm.requests(EX1)[-1]
    assert answer.startswith(b"HTTP/1.1 201 Created\r\n")
    assert f"received {size} bytes, sha256 {expected.hexdigest()}".encode() in answer
    assert (record["body_length"], record["body_sha256"]) == (size, expected.hexdigest())
    assert record["body_complete"] is True
    print(f"farm RSS: baseline {baseline} KiB, peak growth {growth} KiB")  # noqa: T201 - the measure, for a run with -s
    assert growth < 32 * 1024, f"peak RSS grew by {growth} KiB"
