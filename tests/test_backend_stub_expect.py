"""How the stub farm answers ``Expect: 100-continue``: decide from the head
(the default) or blind (stock twisted.web), in memory then over loopback.

In memory, a server's channel runs over a StringTransport with a Clock
(tests.support.stub_memory); the process tests use the session farm.
"""

from __future__ import annotations

import socket
from typing import Any

import pytest

from backend_stub import topology as topo
from backend_stub.channel import CONTINUE, LINGER_SECONDS
from backend_stub.expect import ExpectError, answers_before_body, parse_expect
from backend_stub.faults import NO_FAULT, Fault, Mode
from backend_stub.routing import EchoReply, SinkReply, StreamReply, TextReply
from tests.support.farm import Farm, FarmError
from tests.support.stub_memory import MemoryServer

EX1, EX2 = "ex1.example.com", "ex2.example.com"

REFERRED = (
    b"PUT /apps/Projects/new.eml HTTP/1.1\r\nHost: mail\r\nX-Front-End-Server: fe1\r\n"
    b"Expect: 100-continue\r\nContent-Length: 10\r\n\r\n"
)
STORED = (
    b"PUT /exchange/alice/new.eml HTTP/1.1\r\nHost: mail\r\n"
    b"Expect: 100-continue\r\nContent-Length: 10\r\n\r\n"
)
BODY = b"0123456789"


def _expectations(record: dict[str, Any]) -> tuple[Any, ...]:
    keys = ("expect", "continued", "body_complete", "body_length")
    return tuple(record[key] for key in keys)


# ---------------------------------------------------------------- in memory


def test_parse_expect_accepts_the_modes_and_rejects_the_rest() -> None:
    """The control body names decide or blind, and nothing else."""
    assert parse_expect({"mode": "blind"}) == "blind"
    assert parse_expect({"mode": "decide"}) == "decide"
    for bad in (None, {"mode": "eager"}, {}, {"mode": "blind", "x": 1}):
        with pytest.raises(ExpectError):
            parse_expect(bad)


def test_topology_expect_key_defaults_to_decide() -> None:
    """servers[i].expect is decide by default, may be blind, and nothing else."""
    server: dict[str, Any] = {"name": "a.example.com", "address": "127.0.0.2"}
    data: dict[str, Any] = {"port": 80, "control": "127.0.0.1:81", "servers": [server]}
    assert topo.parse_topology(data).servers[0].expect == "decide"
    server["expect"] = "blind"
    assert topo.parse_topology(data).servers[0].expect == "blind"
    server["expect"] = "lazy"
    with pytest.raises(topo.TopologyError, match=r"^servers\[0\]\.expect: expected one of"):
        topo.parse_topology(data)


def test_answers_before_body_for_failures_and_spoiling_faults_only() -> None:
    """Referrals, 404s and hang/cut/drop/garbage are answered from the head."""
    referral = TextReply(421, "elsewhere\n")
    assert answers_before_body(referral, NO_FAULT)
    assert answers_before_body(TextReply(404, "no\n"), NO_FAULT)
    for success in (TextReply(200, "ok\n"), SinkReply(201, "x"), StreamReply(1), EchoReply()):
        assert not answers_before_body(success, NO_FAULT)
        assert not answers_before_body(success, Fault("delay", seconds=1))
        for mode in ("hang", "drop", "garbage"):
            assert answers_before_body(success, Fault(mode))
        assert answers_before_body(success, Fault("cut", after_bytes=1))


def test_referral_is_answered_before_the_body_without_continue() -> None:
    """decide: a referral comes at once, with Connection: close and no 100 Continue."""
    memory = MemoryServer(EX1)
    conn = memory.connect()
    conn.send(REFERRED)
    answer = conn.take()
    assert answer.startswith(b"HTTP/1.1 421 Misdirected Request\r\n")
    assert b"100 Continue" not in answer
    assert b"\r\nConnection: close\r\n" in answer
    assert b"\r\nX-Replica-Servers: ex2.example.com, ex3.example.com, ex4.example.com\r\n" in answer
    [record] = memory.records
    assert _expectations(record) == ("100-continue", False, False, 0)


def test_unknown_mailbox_is_answered_before_the_body() -> None:
    """decide: a 404 for a mailbox held elsewhere comes without 100 Continue."""
    memory = MemoryServer(EX2)
    conn = memory.connect()
    conn.send(STORED)
    assert conn.take().startswith(b"HTTP/1.1 404 ")


def test_body_sent_anyway_after_an_early_answer_is_discarded_then_closed() -> None:
    """After an early answer the body (and anything after it) is thrown away;
    the write side is shut, and the connection dropped after the linger time."""
    memory = MemoryServer(EX1)
    conn = memory.connect()
    conn.send(REFERRED)
    conn.take()
    assert conn.transport.write_closed
    assert not conn.transport.disconnecting
    conn.send(BODY + b"GET /exchange/alice/ HTTP/1.1\r\nHost: mail\r\n\r\n")
    assert conn.take() == b""
    assert len(memory.records) == 1
    memory.clock.advance(LINGER_SECONDS)
    assert conn.transport.disconnected


def test_held_mailbox_gets_continue_then_the_answer() -> None:
    """decide: a request the server would take gets 100 Continue, then its answer."""
    memory = MemoryServer(EX1)
    conn = memory.connect()
    conn.send(STORED)
    assert conn.take() == CONTINUE
    assert memory.records == []
    conn.send(BODY)
    assert conn.take().startswith(b"HTTP/1.1 201 Created\r\n")
    [record] = memory.records
    assert _expectations(record) == ("100-continue", True, True, 10)
    assert not conn.transport.write_closed
    assert not conn.transport.disconnecting


def test_blind_mode_continues_at_once_and_refers_after_the_body() -> None:
    """blind: 100 Continue at once, the body is read, then the referral."""
    memory = MemoryServer(EX1)
    memory.server.set_expect("blind")
    conn = memory.connect()
    conn.send(REFERRED)
    assert conn.take() == CONTINUE
    conn.send(BODY)
    answer = conn.take()
    assert answer.startswith(b"HTTP/1.1 421 ")
    assert b"Connection: close" not in answer
    [record] = memory.records
    assert _expectations(record) == ("100-continue", True, True, 10)


def test_request_without_expect_is_read_whole_then_answered() -> None:
    """Without Expect nothing changes: no 100 Continue, the referral after the body."""
    memory = MemoryServer(EX1)
    conn = memory.connect()
    conn.send(REFERRED.replace(b"Expect: 100-continue\r\n", b""))
    assert conn.take() == b""
    conn.send(BODY)
    assert conn.take().startswith(b"HTTP/1.1 421 ")
    [record] = memory.records
    assert _expectations(record) == (None, False, True, 10)


def test_expect_without_a_body_is_answered_without_continue() -> None:
    """decide: Expect with Content-Length: 0 gets its answer directly."""
    memory = MemoryServer(EX1)
    conn = memory.connect()
    conn.send(STORED.replace(b"Content-Length: 10", b"Content-Length: 0"))
    assert conn.take().startswith(b"HTTP/1.1 201 Created\r\n")
    assert _expectations(memory.records[0]) == ("100-continue", False, True, 0)


@pytest.mark.parametrize("mode", ["drop", "garbage", "hang", "cut"])
def test_spoiling_fault_is_applied_from_the_head(mode: Mode) -> None:
    """decide: under drop/garbage/hang/cut no 100 Continue is sent, the fault acts at once."""
    memory = MemoryServer(EX1)
    memory.server.fault = Fault(mode, after_bytes=3)
    conn = memory.connect()
    conn.send(STORED)
    answer = conn.take()
    assert b"100 Continue" not in answer
    if mode == "drop":
        assert answer == b""
        assert conn.transport.disconnecting
    elif mode == "garbage":
        assert answer.startswith(b"HTTP/1.1 2OO")
        assert conn.transport.disconnecting
    else:
        assert answer.startswith(b"HTTP/1.1 201 ")
    assert _expectations(memory.records[0]) == ("100-continue", False, False, 0)


def test_delay_holds_an_early_answer_but_not_continue() -> None:
    """decide + delay: a referral waits out the delay; a stored request gets 100 at once."""
    memory = MemoryServer(EX1)
    memory.server.fault = Fault("delay", seconds=2.0)
    referred = memory.connect()
    referred.send(REFERRED)
    stored = memory.connect()
    stored.send(STORED)
    assert referred.take() == b""
    assert stored.take() == CONTINUE
    memory.clock.advance(2.0)
    assert referred.take().startswith(b"HTTP/1.1 421 ")


# ------------------------------------------------------------- real process


def _connect(farm: Farm, server: str) -> socket.socket:
    return socket.create_connection((farm.address_of(server), farm.port), timeout=10)


def _read_head(sock: socket.socket, buffer: bytearray) -> bytes:
    """Read up to the end of one response head (interim or final) from *sock*."""
    while b"\r\n\r\n" not in buffer:
        data = sock.recv(65536)
        assert data, f"connection closed after {bytes(buffer)!r}"
        buffer += data
    head, _, rest = bytes(buffer).partition(b"\r\n\r\n")
    buffer[:] = rest
    return head


def _read_response(sock: socket.socket, buffer: bytearray) -> tuple[bytes, bytes]:
    """One final response (head, body), framed by Content-Length."""
    head = _read_head(sock, buffer)
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(buffer) < length:
        data = sock.recv(65536)
        assert data, "connection closed inside a body"
        buffer += data
    body = bytes(buffer[:length])
    del buffer[:length]
    return head, body


def _read_to_end(sock: socket.socket, buffer: bytearray) -> bytes:
    while data := sock.recv(65536):
        buffer += data
    return bytes(buffer)


def test_referral_over_loopback_comes_before_any_body_byte(clean_farm: Farm) -> None:
    """A real deciding server refers a head alone and then closes its side."""
    with _connect(clean_farm, EX1) as sock:
        sock.sendall(REFERRED)
        buffer = bytearray()
        head, body = _read_response(sock, buffer)
        assert head.startswith(b"HTTP/1.1 421 ")
        assert b"\r\nConnection: close" in head
        assert body.startswith(b"/apps/Projects is held by")
        assert _read_to_end(sock, buffer) == b""  # the server shut its side
    [record] = clean_farm.requests(EX1)
    assert _expectations(record) == ("100-continue", False, False, 0)


def test_client_sending_the_body_anyway_still_reads_the_answer(clean_farm: Farm) -> None:
    """Head and a 4 MiB body at once: the early referral arrives whole, with no reset."""
    size = 4 * 1024 * 1024
    head = REFERRED.replace(b"Content-Length: 10", b"Content-Length: %d" % size)
    with _connect(clean_farm, EX1) as sock:
        sock.sendall(head + b"x" * size)
        buffer = bytearray()
        answer, _ = _read_response(sock, buffer)
        assert answer.startswith(b"HTTP/1.1 421 ")
        assert _read_to_end(sock, buffer) == b""
    assert [r["body_length"] for r in clean_farm.requests(EX1)] == [0]


def test_continue_then_answer_over_loopback_keeps_the_connection(clean_farm: Farm) -> None:
    """A real deciding server sends 100 Continue, takes the body, answers, and
    serves the next request on the same connection."""
    with _connect(clean_farm, EX1) as sock:
        sock.sendall(STORED)
        buffer = bytearray()
        assert _read_head(sock, buffer) == CONTINUE[:-4]
        sock.sendall(BODY)
        head, body = _read_response(sock, buffer)
        assert head.startswith(b"HTTP/1.1 201 Created")
        assert b"received 10 bytes" in body
        sock.sendall(b"GET /exchange/carol/ HTTP/1.1\r\nHost: mail\r\n\r\n")
        head, body = _read_response(sock, buffer)
        assert head.startswith(b"HTTP/1.1 200 ")
        assert body == b"mailbox carol on ex1.example.com\n"
    records = clean_farm.requests(EX1)
    assert [r["continued"] for r in records] == [True, False]


def test_blind_mode_is_switched_through_the_control_api(clean_farm: Farm) -> None:
    """PUT /servers/<name>/expect blind: 100 Continue at once, the referral after the body."""
    assert clean_farm.set_expect(EX1, "blind") == {"mode": "blind"}
    assert [s["expect"] for s in clean_farm.servers()][:2] == ["blind", "decide"]
    with _connect(clean_farm, EX1) as sock:
        sock.sendall(REFERRED)
        buffer = bytearray()
        assert _read_head(sock, buffer) == CONTINUE[:-4]
        sock.sendall(BODY)
        head, _ = _read_response(sock, buffer)
        assert head.startswith(b"HTTP/1.1 421 ")
    [record] = clean_farm.requests(EX1)
    assert _expectations(record) == ("100-continue", True, True, 10)
    clean_farm.set_expect(EX1, "decide")
    assert clean_farm.servers()[0]["expect"] == "decide"


def test_control_expect_rejects_unknown_server_and_bad_mode(clean_farm: Farm) -> None:
    """PUT /servers/<name>/expect answers 404 for an unknown server, 400 for a bad mode."""
    with pytest.raises(FarmError) as unknown:
        clean_farm.set_expect("ex9.example.com", "blind")
    assert unknown.value.status == 404
    with pytest.raises(FarmError) as bad:
        clean_farm.set_expect(EX1, "sometimes")
    assert bad.value.status == 400
    assert "mode" in str(bad.value)
