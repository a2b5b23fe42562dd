"""`feproxy serve` as a real process, in front of the stub farm, over loopback sockets."""

from __future__ import annotations

import hashlib
import http.client
import re
import signal
import socket
import ssl
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509

from tests.support.configs import farm_hosts, write_config
from tests.support.farm import Farm, free_port
from tests.support.serve import ServeProcess, established_to, rss_kib
from tests.support.tls import self_signed

FE_NAME = "fe-test.example.com"


class FrontEndProcess:
    def __init__(self, serve: ServeProcess, port: int, tls_port: int) -> None:
        self.serve = serve
        self.port = port
        self.tls_port = tls_port

    def conn(self, timeout: float = 10) -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)

    def get(
        self,
        path: str,
        method: str = "GET",
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, dict[str, str], bytes]:
        c = self.conn()
        try:
            c.request(method, path, body=body, headers=headers or {})
            r = c.getresponse()
            return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
        finally:
            c.close()


@pytest.fixture(scope="module")
def fe(farm: Farm, tmp_path_factory: pytest.TempPathFactory) -> Iterator[FrontEndProcess]:
    tmp = tmp_path_factory.mktemp("fe")
    key, cert = self_signed(tmp)
    port = free_port()
    tls_port = free_port(exclude=(port,))
    config = write_config(
        tmp / "feproxy.toml",
        {
            "frontend": {
                "name": FE_NAME,
                "listen": [
                    f"tcp:{port}:interface=127.0.0.1",
                    f"ssl:{tls_port}:interface=127.0.0.1:privateKey={key}:certKey={cert}",
                ],
                "backend_port": farm.port,
                "connect_timeout": 1.0,
                "response_timeout": 1.5,
                "authenticate": False,
            },
            "hosts": farm_hosts(farm),
            "vdirs": [
                {"path": "/exchweb", "kind": "static", "servers": ["ex1.example.com"]},
                {
                    "path": "/exchweb/failover",
                    "kind": "static",
                    "servers": ["ex3.example.com", "ex4.example.com"],
                },
            ],
        },
    )
    with ServeProcess.start(config, ("127.0.0.1", port)) as serve:
        yield FrontEndProcess(serve, port, tls_port)


def header(record: dict[str, Any], name: str) -> list[str]:
    return [v for k, v in record["headers"] if k.lower() == name.lower()]


def test_request_reaches_back_end_with_host_and_front_end_headers(
    fe: FrontEndProcess, clean_farm: Farm
) -> None:
    """Host arrives byte for byte; X-Forwarded-For and X-Front-End-Server are the
    front end's; a client's copies and hop-by-hop headers are gone."""
    status, headers, _ = fe.get(
        "/exchweb/echo?a=%2F",
        headers={
            "Host": "WebMail.Example.COM:8443",
            "X-Forwarded-For": "6.6.6.6",
            "X-Front-End-Server": "spoof",
            "Front-End-Https": "On",
            "Connection": "X-Secret",
            "X-Secret": "1",
            "Authorization": "Basic dTpw",
        },
    )
    assert status == 200
    assert headers["x-backend-server"] == "ex1.example.com"
    (record,) = clean_farm.requests("ex1.example.com")
    assert record["host"] == "WebMail.Example.COM:8443"
    assert record["uri"] == "/exchweb/echo?a=%2F"
    assert header(record, "X-Forwarded-For") == ["127.0.0.1"]
    assert header(record, "X-Front-End-Server") == [FE_NAME]
    assert header(record, "Front-End-Https") == []
    assert header(record, "X-Secret") == []
    assert header(record, "Authorization") == ["Basic dTpw"]


def test_tls_client_makes_back_end_see_front_end_https(
    fe: FrontEndProcess, clean_farm: Farm
) -> None:
    """TLS is terminated at the front end, the back end gets plain HTTP with Front-End-Https: On."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    c = http.client.HTTPSConnection("127.0.0.1", fe.tls_port, context=ctx, timeout=10)
    c.request("GET", "/exchweb/echo", headers={"Host": "mail.example.com"})
    assert c.getresponse().status == 200
    c.close()
    (record,) = clean_farm.requests("ex1.example.com")
    assert header(record, "Front-End-Https") == ["On"]


def test_webdav_method_and_body_are_forwarded(fe: FrontEndProcess, clean_farm: Farm) -> None:
    """PROPFIND with a body and Depth reaches the back end unchanged."""
    body = b'<?xml version="1.0"?><a:propfind xmlns:a="DAV:"><a:allprop/></a:propfind>'
    status, _, _ = fe.get(
        "/exchweb/dav/folder/",
        "PROPFIND",
        body,
        {"Depth": "1", "Content-Type": "text/xml"},
    )
    assert status == 200
    (record,) = clean_farm.requests("ex1.example.com")
    assert record["method"] == "PROPFIND"
    assert header(record, "Depth") == ["1"]
    assert record["body_sha256"] == hashlib.sha256(body).hexdigest()


def test_back_end_connections_are_kept_alive_and_reused(
    fe: FrontEndProcess, clean_farm: Farm
) -> None:
    """Sequential requests from different clients share one pooled back-end connection."""
    for _ in range(3):
        assert fe.get("/exchweb/echo")[0] == 200
    peers = {r["peer"] for r in clean_farm.requests("ex1.example.com")}
    assert len(peers) == 1


def test_refused_back_end_is_502_and_static_list_fails_over(
    fe: FrontEndProcess, clean_farm: Farm
) -> None:
    """A refused connection is a one-line 502; a static list tries its next server."""
    clean_farm.set_fault("ex1.example.com", "refuse")
    status, _, body = fe.get("/exchweb/echo")
    assert status == 502
    assert body == b"502 The back-end server refused the connection.\n"
    clean_farm.set_fault("ex3.example.com", "refuse")
    status, headers, _ = fe.get("/exchweb/failover/echo")
    assert status == 200
    assert headers["x-backend-server"] == "ex4.example.com"


def test_response_timeout_is_504(fe: FrontEndProcess, clean_farm: Farm) -> None:
    """A back end that does not answer within response_timeout gives 504."""
    clean_farm.set_fault("ex1.example.com", "delay", seconds=5)
    started = time.monotonic()
    status, _, body = fe.get("/exchweb/echo")
    assert status == 504
    assert body == b"504 The back-end server did not answer in time.\n"
    assert time.monotonic() - started < 4


def test_cut_response_is_visibly_truncated(fe: FrontEndProcess, clean_farm: Farm) -> None:
    """A body cut by the back end reaches the client short of its Content-Length."""
    clean_farm.set_fault("ex1.example.com", "cut", after_bytes=1000)
    c = fe.conn()
    c.request("GET", "/exchweb/bytes/100000")
    r = c.getresponse()
    assert r.status == 200
    assert r.getheader("content-length") == "100000"
    with pytest.raises(http.client.IncompleteRead):
        r.read()
    c.close()
    clean_farm.set_fault("ex1.example.com", "none")
    assert fe.get("/exchweb/echo")[0] == 200


def test_client_going_away_aborts_the_back_end_request(
    fe: FrontEndProcess, clean_farm: Farm
) -> None:
    """When the client disconnects mid-body, the front end closes its back-end connection."""
    with socket.create_connection(("127.0.0.1", fe.port)) as s:
        s.sendall(b"GET /exchweb/bytes/1073741824 HTTP/1.1\r\nHost: x\r\n\r\n")
        got = 0
        while got < 1 << 20:
            got += len(s.recv(65536))
        during = established_to(fe.serve.pid, clean_farm.port)
        assert during >= 1
    deadline = time.monotonic() + 5
    while established_to(fe.serve.pid, clean_farm.port) >= during and time.monotonic() < deadline:
        time.sleep(0.05)
    assert established_to(fe.serve.pid, clean_farm.port) == during - 1


@pytest.mark.slow
@pytest.mark.usefixtures("clean_farm")
def test_streaming_200_mib_to_a_slow_client_keeps_front_end_memory_flat(
    fe: FrontEndProcess,
) -> None:
    """200 MiB through the front end to a client that stalls for a while grows
    the front end's peak RSS by less than 50 MiB: the back end is paused."""
    size = 200 * 1024 * 1024
    before = rss_kib(fe.serve.pid)
    with socket.create_connection(("127.0.0.1", fe.port)) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        s.sendall(
            f"GET /exchweb/bytes/{size} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode()
        )
        buf = bytearray(1 << 20)
        got = s.recv_into(buf)
        time.sleep(1.5)  # a stalled client: without flow control all 200 MiB pile up
        stalled = rss_kib(fe.serve.pid)
        while n := s.recv_into(buf):
            got += n
    peak = rss_kib(fe.serve.pid, "VmHWM")
    assert got > size
    assert (stalled - before) < 50 * 1024, (
        f"RSS grew by {(stalled - before) // 1024} MiB while stalled"
    )
    assert (peak - before) < 50 * 1024, f"peak RSS grew by {(peak - before) // 1024} MiB"


@pytest.mark.parametrize(
    "raw",
    [
        b"GET /exchweb/echo HTTP/1.1\r\nHost: x\r\n"
        b"Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
        b"POST /exchweb/echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        b"GET /exchweb/echo HTTP/1.1\r\nHost: x\r\nBad Header: y\r\n\r\n",
        b"GET /exchweb/../exchange/bob/ HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET exchweb/echo HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /exchweb/echo HTTP/1.1\r\n\r\n",
    ],
)
def test_malformed_request_is_400_and_never_reaches_a_back_end(
    fe: FrontEndProcess, clean_farm: Farm, raw: bytes
) -> None:
    """Framing errors, bad header lines and unsafe paths are refused at the front end."""
    with socket.create_connection(("127.0.0.1", fe.port), timeout=10) as s:
        s.sendall(raw)
        answer = s.recv(4096)
    assert answer.startswith(b"HTTP/1.1 400"), answer
    assert clean_farm.requests() == []


@pytest.mark.usefixtures("clean_farm")
def test_access_log_has_one_line_per_request(fe: FrontEndProcess) -> None:
    """Each request is logged in the combined format with the back end's address
    and the request time appended."""
    fe.get("/exchweb/echo?log=1")
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        lines = [line for line in fe.serve.access_lines() if "/exchweb/echo?log=1" in line]
        if lines:
            break
        time.sleep(0.05)
    (line,) = lines
    assert re.fullmatch(
        r'127\.0\.0\.1 - - \[[^]]+\] "GET /exchweb/echo\?log=1 HTTP/1\.1" 200 [1-9][0-9]* '
        r'"-" "-" 127\.0\.0\.2:[0-9]+ [0-9]+\.[0-9]{3}',
        line,
    ), line


@pytest.mark.usefixtures("farm")
def test_sigterm_stops_serve_with_exit_status_0(tmp_path: Path) -> None:
    """`feproxy serve` exits 0 on SIGTERM."""
    port = free_port()
    config = write_config(
        tmp_path / "fe.toml",
        {
            "frontend": {
                "listen": [f"tcp:{port}:interface=127.0.0.1"],
                "authenticate": False,
            },
            "vdirs": [{"path": "/x", "kind": "static", "servers": ["ex1.example.com"]}],
        },
    )
    serve = ServeProcess.start(config, ("127.0.0.1", port))
    assert serve.stop() == 0


def _tls_context(maximum: ssl.TLSVersion | None = None) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    if maximum is not None:
        with warnings.catch_warnings():  # TLS 1.1 is deprecated: that is the point
            warnings.simplefilter("ignore", DeprecationWarning)
            ctx.minimum_version = ssl.TLSVersion.TLSv1_1
        ctx.maximum_version = maximum
        ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
    return ctx


def _peer_name(port: int) -> str:
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        _tls_context().wrap_socket(raw) as s,
    ):
        der = s.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der).subject.rfc4514_string()


def test_tls_below_1_2_is_refused(fe: FrontEndProcess) -> None:
    """A client limited to TLS 1.1 cannot complete a handshake; TLS 1.2 can."""
    with socket.create_connection(("127.0.0.1", fe.tls_port), timeout=10) as raw:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            old = _tls_context(ssl.TLSVersion.TLSv1_1)
        with pytest.raises(ssl.SSLError, match="PROTOCOL_VERSION"):  # the server's alert
            old.wrap_socket(raw)
    with (
        socket.create_connection(("127.0.0.1", fe.tls_port), timeout=10) as raw,
        _tls_context(ssl.TLSVersion.TLSv1_2).wrap_socket(raw) as s,
    ):
        assert s.version() == "TLSv1.2"


def test_certificate_is_reloaded_on_sighup_without_closing_the_listener(
    farm: Farm, tmp_path: Path
) -> None:
    """New certificate files are served to new connections after SIGHUP; a broken
    pair is refused with a log line and the old certificate stays."""
    key, cert = self_signed(tmp_path, "old.example.com")
    port = free_port()
    config = write_config(
        tmp_path / "fe.toml",
        {
            "frontend": {
                "listen": [f"ssl:{port}:interface=127.0.0.1:privateKey={key}:certKey={cert}"],
                "authenticate": False,
                "backend_port": farm.port,
            },
            "hosts": farm_hosts(farm),
            "vdirs": [{"path": "/exchweb", "kind": "static", "servers": ["ex1.example.com"]}],
        },
    )
    with ServeProcess.start(config, ("127.0.0.1", port)) as serve:
        assert _peer_name(port) == "CN=old.example.com"
        cert.write_text("not a certificate")
        serve.signal(signal.SIGHUP)
        deadline = time.monotonic() + 5
        while "not reloaded" not in serve.errors():
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert _peer_name(port) == "CN=old.example.com"
        self_signed(tmp_path, "new.example.com")
        serve.signal(signal.SIGHUP)
        deadline = time.monotonic() + 5
        while _peer_name(port) != "CN=new.example.com":
            assert time.monotonic() < deadline
            time.sleep(0.05)


def test_back_end_hanging_after_headers_gives_a_visibly_truncated_body(
    fe: FrontEndProcess, clean_farm: Farm
) -> None:
    """Headers then silence: after response_timeout the client's connection is
    closed short of the announced length, and the front end keeps serving."""
    clean_farm.set_fault("ex1.example.com", "hang")
    c = fe.conn()
    started = time.monotonic()
    c.request("GET", "/exchweb/bytes/5000")
    r = c.getresponse()
    assert r.status == 200
    assert r.getheader("content-length") == "5000"
    with pytest.raises(http.client.IncompleteRead):
        r.read()
    c.close()
    assert time.monotonic() - started < 5
    clean_farm.set_fault("ex1.example.com", "none")
    assert fe.get("/exchweb/echo")[0] == 200


def test_garbage_from_the_back_end_is_a_clean_502(fe: FrontEndProcess, clean_farm: Farm) -> None:
    """A back end answering with bytes that are not HTTP gives a one-line 502."""
    clean_farm.set_fault("ex1.example.com", "garbage")
    status, _, body = fe.get("/exchweb/echo")
    assert status == 502
    assert body == b"502 The back-end server closed the connection without a complete answer.\n"
    clean_farm.set_fault("ex1.example.com", "none")
    assert fe.get("/exchweb/echo")[0] == 200


def test_back_end_closing_its_keep_alive_connections_breaks_no_request(
    fe: FrontEndProcess, clean_farm: Farm
) -> None:
    """A back end that drops its idle keep-alive connections (a restart) costs no
    client request, for GET and POST alike."""
    for _ in range(3):
        assert fe.get("/exchweb/echo")[0] == 200
    clean_farm.set_fault("ex1.example.com", "refuse")  # drops every open connection
    clean_farm.set_fault("ex1.example.com", "none")
    time.sleep(0.1)
    assert fe.get("/exchweb/echo")[0] == 200
    assert fe.get("/exchweb/echo", "POST", b"payload")[0] == 200


@pytest.mark.usefixtures("clean_farm")
def test_head_answer_keeps_the_back_ends_content_length(fe: FrontEndProcess) -> None:
    """HEAD is answered with the length the body would have, and no body."""
    conn = fe.conn()
    conn.request("HEAD", "/exchweb/bytes/12345", headers={"Host": "mail.example.com"})
    response = conn.getresponse()
    assert response.status == 200
    assert response.getheader("Content-Length") == "12345"
    assert response.read() == b""
    conn.request("GET", "/exchweb/echo", headers={"Host": "mail.example.com"})
    assert conn.getresponse().status == 200  # the connection is still in step
    conn.close()
