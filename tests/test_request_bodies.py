"""Request bodies through a real `feproxy serve`: streamed to a mailbox in flat
memory without a temporary file, and on a public-folder route sent with
Expect: 100-continue so that a referral comes before the body, with a copy
only for a back end that asks for the body and then refers."""

from __future__ import annotations

import base64
import hashlib
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from frontend.loadtest.procs import memory_kib
from tests.support.farm import Farm, free_port
from tests.support.serve import ServeProcess
from tests.support.slapd import Slapd
from tests.test_end_to_end import fe_config

MIB = 1 << 20
BLOCK = bytes(range(256)) * 4096  # 1 MiB that is not all the same byte


def _auth(user: str) -> bytes:
    return b"Basic " + base64.b64encode(f"{user}:{user}-pw".encode())


def _temp_files(pid: int, tmpdir: Path) -> list[str]:
    """The files under ``tmpdir`` that ``pid`` holds open (deleted ones too)."""
    found = []
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = str(fd.readlink())
        except OSError:
            continue
        if target.startswith(str(tmpdir)):
            found.append(target)
    return found


def _reset_peak(pid: int) -> None:
    Path(f"/proc/{pid}/clear_refs").write_text("5")


def _upload(
    port: int,
    path: str,
    user: str,
    mib: int,
    during: Callable[[], None] | None = None,
) -> tuple[bytes, str]:
    """PUT ``mib`` MiB to ``path``; return the answer and the body's SHA-256.

    ``during()`` is called after each 64 MiB sent.
    """
    digest = hashlib.sha256()
    with socket.create_connection(("127.0.0.1", port), timeout=60) as s:
        s.sendall(
            b"PUT " + path.encode() + b" HTTP/1.1\r\nHost: mail.example.com\r\n"
            b"Authorization: " + _auth(user) + b"\r\n"
            b"Content-Length: %d\r\nConnection: close\r\n\r\n" % (mib * MIB)
        )
        for i in range(mib):
            s.sendall(BLOCK)
            digest.update(BLOCK)
            if during is not None and i % 64 == 63:
                during()
        answer = b""
        while chunk := s.recv(65536):
            answer += chunk
    return answer, digest.hexdigest()


@pytest.fixture
def serve(farm: Farm, slapd: Slapd, tmp_path: Path) -> Iterator[tuple[ServeProcess, int, Path]]:
    """A front end of its own (its referral cache starts empty), TMPDIR its own."""
    port = free_port()
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    config = fe_config(tmp_path / "fe.toml", port, farm, slapd, response_timeout=30.0)
    with ServeProcess.start(config, ("127.0.0.1", port), env={"TMPDIR": str(tmpdir)}) as fe:
        yield fe, port, tmpdir


@pytest.mark.slow
def test_gigabyte_upload_to_a_mailbox_streams_in_flat_memory_without_disk(
    serve: tuple[ServeProcess, int, Path], clean_farm: Farm
) -> None:
    """1 GiB PUT to alice's mailbox: the back end gets every byte as sent, the
    front end's peak RSS grows by less than 32 MiB, and it opens no file."""
    fe, port, tmpdir = serve
    before = memory_kib(fe.pid)
    _reset_peak(fe.pid)
    files: list[str] = []
    answer, sha = _upload(
        port,
        "/exchange/alice/big.bin",
        "alice",
        1024,
        lambda: files.extend(_temp_files(fe.pid, tmpdir)),
    )
    assert answer.startswith(b"HTTP/1.1 201"), answer[:300]
    peak = memory_kib(fe.pid, "VmHWM")
    assert peak - before < 32 * 1024, f"RSS grew by {(peak - before) // 1024} MiB"
    assert files == []
    assert list(tmpdir.iterdir()) == []
    (record,) = [r for r in clean_farm.requests("ex1.example.com") if r["method"] == "PUT"]
    assert record["body_length"] == 1024 * MIB
    assert record["body_sha256"] == sha
    assert record["body_complete"] is True
    assert record["expect"] is None  # a mailbox does not refer: no 100-continue asked


def test_upload_referred_before_its_body_goes_whole_to_the_replica(
    serve: tuple[ServeProcess, int, Path], clean_farm: Farm
) -> None:
    """PUT into /apps/Archive: ex4 (bob's replica) refers before asking for the
    body; ex3 gets it whole; no copy of the body was made."""
    fe, port, tmpdir = serve
    files: list[str] = []
    answer, sha = _upload(
        port,
        "/apps/Archive/notes.bin",
        "bob",
        128,
        lambda: files.extend(_temp_files(fe.pid, tmpdir)),
    )
    assert answer.startswith(b"HTTP/1.1 201"), answer[:300]
    assert b"X-Backend-Server: ex3.example.com" in answer
    assert files == []
    (referred,) = clean_farm.requests("ex4.example.com")
    assert referred["expect"] == "100-continue"
    assert referred["continued"] is False
    assert referred["body_length"] == 0
    (stored,) = clean_farm.requests("ex3.example.com")
    assert stored["body_length"] == 128 * MIB
    assert stored["body_sha256"] == sha


def test_upload_referred_after_its_body_is_sent_again_from_a_copy(
    serve: tuple[ServeProcess, int, Path], clean_farm: Farm
) -> None:
    """A back end that asks for the body (100 Continue at once) and then refers:
    the next replica gets the same bytes again, from the copy kept on disk
    while they streamed; the copy is gone once the request is over."""
    fe, port, tmpdir = serve
    clean_farm.set_expect("ex4.example.com", "blind")
    files: list[str] = []
    answer, sha = _upload(
        port,
        "/apps/Archive/notes.bin",
        "bob",
        128,
        lambda: files.extend(_temp_files(fe.pid, tmpdir)),
    )
    assert answer.startswith(b"HTTP/1.1 201"), answer[:300]
    assert b"X-Backend-Server: ex3.example.com" in answer
    assert files, "no copy of the body was kept"
    (referred,) = clean_farm.requests("ex4.example.com")
    assert referred["continued"] is True
    assert referred["body_sha256"] == sha
    (stored,) = clean_farm.requests("ex3.example.com")
    assert stored["body_length"] == 128 * MIB
    assert stored["body_sha256"] == sha
    deadline = time.monotonic() + 5
    while _temp_files(fe.pid, tmpdir) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _temp_files(fe.pid, tmpdir) == []


def test_upload_refused_at_its_head_is_answered_before_the_body_and_never_spooled(
    serve: tuple[ServeProcess, int, Path], clean_farm: Farm
) -> None:
    """Without credentials, a PUT announcing 200 MiB with Expect: 100-continue
    gets 401 at once, no 100 Continue, and nothing is read or written to disk."""
    fe, port, tmpdir = serve
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(
            b"PUT /exchange/alice/x HTTP/1.1\r\nHost: mail.example.com\r\n"
            b"Expect: 100-continue\r\nContent-Length: %d\r\n\r\n" % (200 * MIB)
        )
        answer = b""
        while chunk := s.recv(65536):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 401"), answer[:200]
    assert b"100 Continue" not in answer
    assert b"Connection: close" in answer
    assert _temp_files(fe.pid, tmpdir) == []
    assert clean_farm.requests() == []
