"""A minimal HTTP/1.1 back end: one fixed response to every request.

``python bench/backend.py --listen ADDR:PORT [--listen ...] --replay FILE``
answers every request on every ADDR:PORT with the response in FILE (status
line, headers and body, as captured from the stub farm by the harness),
after setting its ``Connection`` header for the request: none for HTTP/1.1
keep-alive, ``keep-alive`` for HTTP/1.0 with ``Connection: keep-alive``,
``close`` (and the connection closed after the response) otherwise.

It exists so that the benchmark's requests-per-second runs can compare the
proxies without the stub farm's own cost (a twisted.web server with request
recording and fault injection, ~100-170 microseconds of CPU per request) on
the servers' core: real back ends are other machines.  So it uses
twisted.internet only: requests are split at the blank line after their
headers (pipelined requests in one read get one write), a request body is
skipped by its ``Content-Length``, and nothing else is looked at; the answer
goes straight to the socket when nothing is queued (Twisted's ``write`` would
wait for the next turn of the reactor, with two ``epoll_ctl`` calls).  A
request it cannot frame (a chunked body, a bad ``Content-Length``) is
answered and its connection closed.

Only the standard library and twisted: it runs as a script (``bench/`` is
not on its import path then).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from twisted.internet.interfaces import ITCPTransport
from twisted.internet.protocol import Factory, Protocol

from frontend.wire.transport import send_now

__all__ = ["Reply", "ReplayFactory", "ReplayProtocol", "main", "parse_request_head"]

MAX_HEAD = 64 * 1024  # a request head longer than this closes the connection
_HOP = (b"connection", b"keep-alive")


@dataclass(frozen=True)
class Reply:
    """The replayed response, ready to write for each kind of request."""

    persistent: bytes  # HTTP/1.1 keep-alive: no Connection header
    keep_alive: bytes  # HTTP/1.0 with Connection: keep-alive
    close: bytes  # Connection: close, then the connection is closed

    @classmethod
    def parse(cls, data: bytes) -> Reply:
        """``data``: a complete response with a ``Content-Length`` body."""
        head, sep, body = data.partition(b"\r\n\r\n")
        if not sep or not head.startswith(b"HTTP/1."):
            raise ValueError("not an HTTP/1.x response")
        status, *fields = head.split(b"\r\n")
        kept = [f for f in fields if f.partition(b":")[0].strip().lower() not in _HOP]
        lengths = [f for f in kept if f.partition(b":")[0].strip().lower() == b"content-length"]
        if len(lengths) != 1 or int(lengths[0].partition(b":")[2]) != len(body):
            raise ValueError("the response needs one Content-Length equal to its body's length")

        def build(connection: bytes | None) -> bytes:
            extra = [b"Connection: " + connection] if connection else []
            return b"\r\n".join([status, *kept, *extra]) + b"\r\n\r\n" + body

        return cls(build(None), build(b"keep-alive"), build(b"close"))


def parse_request_head(head: bytes) -> tuple[bool, bool, int]:
    """(keep the connection, HTTP/1.1 or later, body length to skip) of one request head.

    A request that cannot be framed (chunked, bad ``Content-Length``) is not kept.
    """
    request_line, *fields = head.split(b"\r\n")
    version = request_line.rpartition(b" ")[2]
    http11 = version.startswith(b"HTTP/1.") and version != b"HTTP/1.0"
    tokens: set[bytes] = set()
    length = 0
    framed = version.startswith(b"HTTP/")
    for field in fields:
        name, _, value = field.partition(b":")
        name = name.strip().lower()
        if name == b"connection":
            tokens.update(t.strip() for t in value.lower().split(b","))
        elif name == b"content-length":
            try:
                length = int(value)
            except ValueError:
                framed = False
            framed = framed and length >= 0
        elif name == b"transfer-encoding":
            framed = False
    if not framed or b"close" in tokens:
        return False, http11, 0
    return http11 or b"keep-alive" in tokens, http11, length


class ReplayProtocol(Protocol):
    """One client connection: every request answered with the reply."""

    def __init__(self, reply: Reply) -> None:
        self._reply = reply
        self._buffer = b""
        self._skip = 0  # bytes of a request body still to discard
        self._closing = False

    def connectionMade(self) -> None:
        transport = self.transport
        if ITCPTransport.providedBy(transport):
            transport.setTcpNoDelay(True)

    def dataReceived(self, data: bytes) -> None:
        if self._closing:
            return
        buffer = self._buffer + data if self._buffer else data
        pos, end, out = 0, len(buffer), []
        while pos < end:
            if self._skip:
                taken = min(self._skip, end - pos)
                pos += taken
                self._skip -= taken
                continue
            while buffer.startswith(b"\r\n", pos):  # blank lines between requests
                pos += 2
            stop = buffer.find(b"\r\n\r\n", pos)
            if stop < 0:
                break
            keep, http11, self._skip = parse_request_head(buffer[pos:stop])
            pos = stop + 4
            if not keep:
                out.append(self._reply.close)
                self._closing = True
                break
            out.append(self._reply.persistent if http11 else self._reply.keep_alive)
        self._buffer = buffer[pos:] if not self._closing else b""
        if len(self._buffer) > MAX_HEAD:
            self._closing = True
        transport: Any = self.transport
        if out:
            send_now(transport, b"".join(out))
        if self._closing:
            transport.loseConnection()


class ReplayFactory(Factory):
    """Builds a :class:`ReplayProtocol` per connection."""

    noisy = False

    def __init__(self, reply: Reply) -> None:
        self.reply = reply

    def buildProtocol(self, addr: object) -> ReplayProtocol:
        return ReplayProtocol(self.reply)


def _address(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected ADDR:PORT, not {text!r}")
    return host, int(port)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench/backend.py", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--listen", type=_address, action="append", required=True, metavar="ADDR:PORT"
    )
    parser.add_argument("--replay", type=Path, required=True, metavar="FILE")
    args = parser.parse_args(argv)
    try:
        reply = Reply.parse(args.replay.read_bytes())
    except (OSError, ValueError) as e:
        parser.error(f"--replay {args.replay}: {e}")

    # The entry point: the only place that imports the global reactor.
    from twisted.internet import reactor as global_reactor

    reactor: Any = global_reactor  # the installed reactor's interfaces are not typed
    factory = ReplayFactory(reply)
    for host, port in args.listen:
        bound = reactor.listenTCP(port, factory, backlog=1024, interface=host).getHost()
        print(f"bench back end on {bound.host}:{bound.port}", flush=True)
    reactor.run()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
