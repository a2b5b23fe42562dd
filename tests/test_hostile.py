"""Hostile clients against a real `feproxy serve`: framing, slowness, size, floods."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.configs import farm_frontend, farm_hosts, write_config
from tests.support.farm import Farm, free_port
from tests.support.serve import ServeProcess
from tests.test_forwarding_real import FrontEndProcess


def start_fe(farm: Farm, tmp: Path, **frontend: object) -> tuple[ServeProcess, int]:
    port = free_port()
    config = write_config(
        tmp / "fe.toml",
        {
            "frontend": farm_frontend(
                port, farm, name="fe.example.com", authenticate=False, **frontend
            ),
            "hosts": farm_hosts(farm),
            "vdirs": [{"path": "/exchweb", "kind": "static", "servers": ["ex1.example.com"]}],
        },
    )
    return ServeProcess.start(config, ("127.0.0.1", port)), port


@pytest.fixture(scope="module")
def fe(farm: Farm, tmp_path_factory: pytest.TempPathFactory) -> Iterator[FrontEndProcess]:
    serve, port = start_fe(
        farm,
        tmp_path_factory.mktemp("hostile"),
        header_timeout=0.5,
        body_timeout=0.5,
        client_idle_timeout=1.0,
        max_body_size=1000,
        max_connections=2000,
    )
    with serve:
        yield FrontEndProcess(serve, port, 0)


def exchange(port: int, raw: bytes, wait: float = 5.0) -> bytes:
    """Send ``raw`` and read until the server closes (or ``wait`` passes)."""
    with socket.create_connection(("127.0.0.1", port), timeout=wait) as s:
        s.sendall(raw)
        got = b""
        try:
            while chunk := s.recv(65536):
                got += chunk
        except TimeoutError:
            pass
    return got


H = b"Host: mail.example.com\r\n"


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        (
            b"POST /exchweb/echo HTTP/1.1\r\n" + H + b"Content-Length: 4\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            b"400",
        ),
        (
            b"POST /exchweb/echo HTTP/1.1\r\n" + H + b"Content-Length: 4\r\n"
            b"Content-Length: 5\r\n\r\nabcde",
            b"400",
        ),
        (b"POST /exchweb/echo HTTP/1.1\r\n" + H + b"Content-Length: 4, 5\r\n\r\nabcde", b"400"),
        (
            b"POST /exchweb/echo HTTP/1.1\r\n" + H + b"Transfer-Encoding: xchunked\r\n\r\n"
            b"0\r\n\r\n",
            b"400",
        ),
        (
            b"POST /exchweb/echo HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked, identity\r\n"
            b"\r\n0\r\n\r\n",
            b"400",
        ),
        (
            b"POST /exchweb/echo HTTP/1.1\r\n" + H + b"Transfer-Encoding : chunked\r\n\r\n"
            b"0\r\n\r\n",
            b"400",
        ),
        (
            b"POST /exchweb/echo HTTP/1.1\r\n" + H + b"X: y\r\n Transfer-Encoding: chunked\r\n\r\n"
            b"0\r\n\r\n",
            b"400",
        ),
        (b"GET /exchweb/echo HTTP/1.1\nHost: mail.example.com\n\n", b"400"),
        (b"GET /exchweb/echo HTTP/1.1\r\nHost: mail.example.com\r\nX: a\rb\r\n\r\n", b"400"),
        (b"GET /exchweb/" + b"a" * 20000 + b" HTTP/1.1\r\n" + H + b"\r\n", b"414"),
        (b"GET /exchweb/echo HTTP/1.1\r\n" + H + b"X: " + b"a" * 20000 + b"\r\n\r\n", b"431"),
        (b"GET /exchweb/echo HTTP/1.1\r\n" + H + b"X: y\r\n" * 600 + b"\r\n", b"431"),
    ],
    ids=[
        "cl-and-te",
        "duplicate-cl",
        "list-cl",
        "te-xchunked",
        "te-list",
        "te-space-colon",
        "obs-fold",
        "bare-lf",
        "bare-cr",
        "long-line",
        "long-header",
        "many-headers",
    ],
)
def test_ambiguous_framing_is_refused_and_never_forwarded(
    fe: FrontEndProcess, clean_farm: Farm, raw: bytes, status: bytes
) -> None:
    """Requests two parsers could frame differently get an error status, and the
    back end sees nothing of them."""
    answer = exchange(fe.port, raw)
    assert answer.startswith(b"HTTP/1.1 " + status), answer[:200]
    time.sleep(0.05)
    assert clean_farm.requests() == []


def test_pipelined_requests_are_forwarded_one_by_one(fe: FrontEndProcess, clean_farm: Farm) -> None:
    """Two requests in one packet are two requests at the back end, with their own bodies."""
    raw = (
        b"POST /exchweb/a HTTP/1.1\r\n" + H + b"Content-Length: 3\r\n\r\nabc"
        b"GET /exchweb/b HTTP/1.1\r\n" + H + b"Connection: close\r\n\r\n"
    )
    answer = exchange(fe.port, raw)
    assert answer.count(b"HTTP/1.1 200") == 2
    assert [(r["method"], r["uri"], r["body_length"]) for r in clean_farm.requests()] == [
        ("POST", "/exchweb/a", 3),
        ("GET", "/exchweb/b", 0),
    ]


def test_body_over_the_limit_is_413_declared_or_chunked(
    fe: FrontEndProcess, clean_farm: Farm
) -> None:
    """A declared Content-Length over max_body_size is answered 413 and nothing is
    forwarded; a chunked body growing past it is answered 413, and what the back
    end got of it (bodies stream) never arrived as a complete request."""
    declared = exchange(
        fe.port, b"PUT /exchweb/x HTTP/1.1\r\n" + H + b"Content-Length: 5000\r\n\r\n" + b"a" * 5000
    )
    chunk = b"%x\r\n%s\r\n" % (600, b"b" * 600)
    chunked = exchange(
        fe.port,
        b"PUT /exchweb/x HTTP/1.1\r\n"
        + H
        + b"Transfer-Encoding: chunked\r\n\r\n"
        + chunk * 3
        + b"0\r\n\r\n",
    )
    assert declared.startswith(b"HTTP/1.1 413")
    assert chunked.startswith(b"HTTP/1.1 413")
    assert declared.endswith(b"413 The request body is too large.\n")
    records = clean_farm.requests()
    assert len(records) <= 1
    assert not any(r["body_complete"] for r in records)


def test_slow_headers_are_cut_with_408(fe: FrontEndProcess, clean_farm: Farm) -> None:
    """A client dribbling its headers (each byte well within the idle timeout) is
    answered 408 after header_timeout."""
    with socket.create_connection(("127.0.0.1", fe.port), timeout=5) as s:
        s.sendall(b"GET /exchweb/echo HTTP/1.1\r\n")
        started = time.monotonic()
        answer = b""
        for byte in b"Host: mail.example.com\r\nX-Slow: " + b"z" * 40:
            try:
                s.sendall(bytes([byte]))
            except OSError:
                break
            time.sleep(0.1)
            s.setblocking(False)  # noqa: FBT003 - socket.setblocking takes it positionally
            with contextlib.suppress(BlockingIOError):
                answer += s.recv(4096)
            s.setblocking(True)  # noqa: FBT003 - socket.setblocking takes it positionally
            if answer:
                break
    assert answer.startswith(b"HTTP/1.1 408"), answer
    assert time.monotonic() - started < 2.5
    assert clean_farm.requests() == []


def test_slow_body_is_cut_with_408(fe: FrontEndProcess, clean_farm: Farm) -> None:
    """A body that stalls for body_timeout is refused with 408; the back end, which
    got its start as it streamed, sees it broken off, never complete."""
    answer = exchange(
        fe.port, b"POST /exchweb/echo HTTP/1.1\r\n" + H + b"Content-Length: 100\r\n\r\nonly-this"
    )
    assert answer.startswith(b"HTTP/1.1 408")
    records = clean_farm.requests()
    assert [(r["body_length"], r["body_complete"]) for r in records] in ([], [(9, False)])


def test_idle_keep_alive_connection_is_closed(fe: FrontEndProcess) -> None:
    """A keep-alive connection idle for client_idle_timeout is closed by the front end."""
    with socket.create_connection(("127.0.0.1", fe.port), timeout=5) as s:
        s.sendall(b"GET /exchweb/echo HTTP/1.1\r\n" + H + b"\r\n")
        time.sleep(0.3)
        assert s.recv(65536).startswith(b"HTTP/1.1 200")
        started = time.monotonic()
        assert s.recv(65536) == b""  # closed by the front end
        assert 0.5 < time.monotonic() - started < 3


@pytest.mark.usefixtures("clean_farm")
def test_hundreds_of_slow_clients_do_not_stop_others(fe: FrontEndProcess) -> None:
    """While 300 connections dribble headers, a normal client is served promptly."""
    slow = []
    for _ in range(300):
        s = socket.create_connection(("127.0.0.1", fe.port), timeout=5)
        s.sendall(b"GET /exchweb/echo HTTP/1.1\r\nHost: x")
        slow.append(s)
    try:
        started = time.monotonic()
        answer = exchange(
            fe.port, b"GET /exchweb/echo HTTP/1.1\r\n" + H + b"Connection: close\r\n\r\n"
        )
        assert answer.startswith(b"HTTP/1.1 200")
        assert time.monotonic() - started < 0.5
    finally:
        for s in slow:
            s.close()


def test_connections_over_the_limit_get_503(farm: Farm, tmp_path: Path) -> None:
    """Beyond max_connections a new connection is answered 503 and closed; once
    others close, connections are accepted again."""
    serve, port = start_fe(
        farm, tmp_path, max_connections=5, client_idle_timeout=30.0, header_timeout=30.0
    )
    with serve:
        time.sleep(0.2)  # the start-up probe's connection is gone
        held = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(5)]
        time.sleep(0.2)
        for s in held:  # all five were accepted and are still open
            s.setblocking(False)  # noqa: FBT003 - socket.setblocking takes it positionally
            with pytest.raises(BlockingIOError):
                s.recv(1)
        answer = exchange(port, b"GET /exchweb/echo HTTP/1.1\r\n" + H + b"\r\n")
        assert answer.startswith(b"HTTP/1.1 503")
        for s in held:
            s.close()
        time.sleep(0.2)
        answer = exchange(
            port, b"GET /exchweb/echo HTTP/1.1\r\n" + H + b"Connection: close\r\n\r\n"
        )
        assert answer.startswith(b"HTTP/1.1 200")


@pytest.mark.usefixtures("clean_farm")
def test_requests_keep_flowing_on_other_connections_during_an_attack(fe: FrontEndProcess) -> None:
    """Malformed requests on some connections never disturb requests on others."""
    errors: list[bytes] = []

    def attack() -> None:
        errors.extend(exchange(fe.port, b"GET / HTTP/1.1\nHost: x\n\n") for _ in range(30))

    t = threading.Thread(target=attack)
    t.start()
    ok = [
        exchange(fe.port, b"GET /exchweb/echo HTTP/1.1\r\n" + H + b"Connection: close\r\n\r\n")
        for _ in range(30)
    ]
    t.join(30)
    assert all(a.startswith(b"HTTP/1.1 200") for a in ok)
    assert all(e.startswith(b"HTTP/1.1 400") for e in errors)
