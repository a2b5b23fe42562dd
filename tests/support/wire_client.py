"""A raw-socket client for the differential table, and the front end it runs against.

:func:`exchange` sends a case's bytes (in one write, or one byte at a time)
and reads until the front end closes the connection, the expected answers
are complete on a connection that stays open, or a deadline passes;
:func:`parse_responses` splits what came back into responses.
"""

from __future__ import annotations

import contextlib
import re
import select
import shutil
import socket
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from tests.support.configs import farm_hosts, write_config
from tests.support.farm import DEFAULT_TOPOLOGY, LOOPBACK_ADDRESSES, Farm, free_port
from tests.support.serve import ServeProcess
from tests.support.wire_cases import MAX_BODY_SIZE, WireCase

__all__ = [
    "DEADLINE",
    "Outcome",
    "Response",
    "exchange",
    "front_end_config",
    "live_answers",
    "parse_responses",
    "run_case",
    "start_front_end",
]

#: Longest wait for one exchange, in seconds.
DEADLINE = 5.0
# Interim responses (a 101 is final: the connection would change protocols).
_INTERIM = frozenset({100, 102, 103})
_STATUS_LINE = re.compile(rb"HTTP/1\.[01] (\d{3})(?: |\r|\Z)")
# Bytes after which the byte-by-byte sender pauses, so the front end's reads
# really end there (the grammar's boundaries).
_PAUSE_AFTER = frozenset(b"\r\n :;,")


@dataclass(frozen=True)
class Response:
    """One response as the client read it (``complete``: its whole body came)."""

    status: int
    headers: tuple[tuple[bytes, bytes], ...]
    body: bytes
    complete: bool

    def header(self, name: bytes) -> list[bytes]:
        low = name.lower()
        return [v for n, v in self.headers if n.lower() == low]


@dataclass(frozen=True)
class Outcome:
    """What the front end did with one case's bytes."""

    data: bytes
    responses: tuple[Response, ...]
    closed: bool  # the front end closed the connection (FIN or RST)
    timed_out: bool  # the deadline passed before that

    @property
    def statuses(self) -> tuple[int, ...]:
        return tuple(r.status for r in self.responses)

    @property
    def answer(self) -> str:
        """Short text for the table: the statuses, then how the connection ended."""
        ending = "closed" if self.closed else "timeout" if self.timed_out else "open"
        statuses = " ".join(str(s) for s in self.statuses)
        return f"{statuses} {ending}" if statuses else ending


def parse_responses(data: bytes, methods: Sequence[bytes] = ()) -> list[Response]:
    """The responses in ``data`` (interim 1xx left out); ``methods`` are those of
    the requests answered, in order (a HEAD response has no body)."""
    out: list[Response] = []
    pos, answered = 0, 0
    while pos < len(data):
        end = data.find(b"\r\n\r\n", pos)
        head = data[pos:] if end < 0 else data[pos:end]
        lines = head.split(b"\r\n")
        status_line = _STATUS_LINE.match(lines[0])
        if status_line is None:
            break
        status = int(status_line.group(1))
        headers = tuple(
            (name.strip(), value.strip())
            for name, _, value in (line.partition(b":") for line in lines[1:])
        )
        if end < 0:
            out.append(Response(status, headers, b"", complete=False))
            break
        pos = end + 4
        if status in _INTERIM:
            continue
        method = methods[answered] if answered < len(methods) else b"GET"
        answered += 1
        response = Response(status, headers, b"", complete=True)
        lengths = response.header(b"content-length")
        if method == b"HEAD" or status in (101, 204, 304):
            pass
        elif any(v.lower() == b"chunked" for v in response.header(b"transfer-encoding")):
            body, pos, complete = _dechunk(data, pos)
            response = Response(status, headers, body, complete)
        elif lengths and lengths[0].isdigit():
            body = data[pos : pos + int(lengths[0])]
            pos += len(body)
            response = Response(status, headers, body, len(body) == int(lengths[0]))
        else:  # read until the connection closes
            response = Response(status, headers, data[pos:], complete=True)
            pos = len(data)
        out.append(response)
        if status == 101:
            break
    return out


def _dechunk(data: bytes, pos: int) -> tuple[bytes, int, bool]:
    body = b""
    while True:
        eol = data.find(b"\r\n", pos)
        if eol < 0:
            return body, len(data), False
        size = int(data[pos:eol].split(b";")[0] or b"0", 16)
        pos = eol + 2
        if size == 0:
            end = data.find(b"\r\n\r\n", pos - 2)
            return (body, end + 4, True) if end >= 0 else (body, len(data), False)
        body += data[pos : pos + size]
        if pos + size + 2 > len(data):
            return body, len(data), False
        pos += size + 2


def exchange(
    port: int,
    raw: bytes,
    *,
    bytewise: bool = False,
    enough: Callable[[list[Response]], bool] | None = None,
    methods: Sequence[bytes] = (),
    deadline: float = DEADLINE,
) -> Outcome:
    """Send ``raw`` to the front end on ``port`` and read its answer.

    Reading ends when the connection closes, when ``deadline`` seconds have
    passed, or once ``enough`` says so of the responses read so far.
    """
    until = time.monotonic() + deadline
    data = b""
    closed = False
    with socket.create_connection(("127.0.0.1", port), timeout=deadline) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            if bytewise:
                for i in range(len(raw)):
                    sock.sendall(raw[i : i + 1])
                    if raw[i] in _PAUSE_AFTER:
                        time.sleep(0.001)
                    got, closed = _drain(sock)
                    data += got
                    if closed:
                        break
            else:
                sock.sendall(raw)
        except OSError:  # closed or reset by the front end (it refused early)
            pass

        def done() -> bool:
            return enough is not None and enough(parse_responses(data, methods))

        while not closed and not done():
            left = until - time.monotonic()
            if left <= 0:
                break
            sock.settimeout(left)
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                break
            except ConnectionResetError:
                closed = True
                break
            if not chunk:
                closed = True
                break
            data += chunk
    timed_out = not closed and not done()
    return Outcome(data, tuple(parse_responses(data, methods)), closed, timed_out)


def _drain(sock: socket.socket) -> tuple[bytes, bool]:
    """What the front end has sent so far, without waiting; True once it closed."""
    got = b""
    while select.select([sock], [], [], 0)[0]:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            return got, True
        if not chunk:
            return got, True
        got += chunk
    return got, False


def run_case(port: int, case: WireCase, *, bytewise: bool = False) -> Outcome:
    """Send ``case`` to the front end on ``port``.

    Reading stops once the expected number of responses is complete if the
    connection is meant to stay open, or if they already differ from the
    expected ones (no need to wait for an idle timeout to see that); else
    it goes on until the front end closes the connection.
    """
    count = len(case.expect)

    def enough(responses: list[Response]) -> bool:
        complete = [r.status for r in responses if r.complete][:count]
        if len(complete) < count:
            return False
        return case.stays_open or tuple(complete) != case.expect

    methods = [case.method(n) for n in range(1, count + 1)]
    return exchange(port, case.raw, bytewise=bytewise, enough=enough, methods=methods)


def front_end_config(farm: Farm, port: int) -> dict[str, object]:
    """A front end on ``port`` whose ``/exchweb`` (static, no authentication)
    goes to the farm's ex1, with small limits."""
    return {
        "frontend": {
            "name": "fe.example.com",
            "listen": [f"tcp:{port}:interface=127.0.0.1"],
            "backend_port": farm.port,
            "authenticate": False,
            "max_body_size": MAX_BODY_SIZE,
            "header_timeout": 3.0,
            "body_timeout": 2.0,
            "client_idle_timeout": 2.0,
            "max_connections": 1000,
        },
        "hosts": farm_hosts(farm),
        "vdirs": [{"path": "/exchweb", "kind": "static", "servers": ["ex1.example.com"]}],
    }


def start_front_end(farm: Farm, directory: Path) -> tuple[ServeProcess, int]:
    """``feproxy serve`` in front of ``farm``, configured in ``directory``."""
    port = free_port(LOOPBACK_ADDRESSES[:1], exclude={farm.port, farm.control_port})
    config = write_config(directory / "differential.toml", front_end_config(farm, port))
    return ServeProcess.start(config, ("127.0.0.1", port)), port


@contextlib.contextmanager
def live_answers() -> Iterator[Callable[[WireCase], str]]:
    """A farm and a front end of their own; yields case -> the front end's answer."""
    directory = Path(tempfile.mkdtemp(prefix="feproxy-wire-"))
    port = free_port(LOOPBACK_ADDRESSES[1:])
    control = free_port(LOOPBACK_ADDRESSES[:1], exclude={port})
    try:
        with Farm.start(str(DEFAULT_TOPOLOGY), port, control) as farm:
            serve, fe_port = start_front_end(farm, directory)
            with serve:
                yield lambda case: run_case(fe_port, case).answer
    finally:
        shutil.rmtree(directory, ignore_errors=True)
