"""One client request as the handler sees it, and the response it writes.

:class:`IncomingRequest` is made by a client connection
(:mod:`frontend.wire.server`) once the request's head is parsed and its body read;
the handler answers through it, and the connection frames what it writes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from frontend.wire.bodies import EMPTY_BODY, RequestBody

if TYPE_CHECKING:
    from frontend.wire.server import ClientConnection

__all__ = ["IncomingRequest"]

_NO_BODY = frozenset({204, 304})


class IncomingRequest:
    """One client request, head parsed and body read, and its response.

    The handler answers with :meth:`respond`, :meth:`write` and
    :meth:`finish` (or :meth:`cut` when the response cannot be completed).
    ``on_gone`` is called if the client goes away before the response ends;
    ``on_end`` once when the request is over, whichever way.
    """

    __slots__ = (
        "method",
        "target",
        "version",
        "headers",
        "body",
        "peer",
        "secure",
        "keep_alive",
        "code",
        "started",
        "done",
        "on_gone",
        "on_end",
        "_conn",
        "_chunked",
        "_bodyless",
        "_head",
    )

    def __init__(
        self,
        conn: ClientConnection,
        method: bytes,
        target: bytes,
        version: bytes,
        headers: list[tuple[bytes, bytes]],
        keep_alive: bool,
    ) -> None:
        self._conn = conn
        self.method = method
        self.target = target
        self.version = version
        self.headers = headers
        self.keep_alive = keep_alive
        self.body: RequestBody = EMPTY_BODY
        self.peer: str = conn.peer
        self.secure: bool = conn.secure
        self.code = 0
        self.started = False
        self.done = False
        self.on_gone: Callable[[], None] | None = None
        self.on_end: Callable[[], None] | None = None
        self._chunked = False
        self._bodyless = False
        self._head = b""

    def header(self, name: bytes) -> list[bytes]:
        """Every value of header ``name`` (lowercase)."""
        return [v for n, v in self.headers if n.lower() == name]

    def respond(
        self, code: int, phrase: bytes, headers: list[tuple[bytes, bytes]], length: int | None
    ) -> None:
        """Write the status line and headers.

        ``length`` is the body's length, or None when unknown: the body is
        then sent chunked (or, to an HTTP/1.0 client, delimited by closing
        the connection).  A HEAD request or a 204/304 answer has no body.
        """
        self.code = code
        self.started = True
        self._bodyless = self.method == b"HEAD" or code in _NO_BODY
        lines = [b"HTTP/1.1 %d %s\r\n" % (code, phrase)]
        lines += [b"%s: %s\r\n" % pair for pair in headers]
        if code not in _NO_BODY:
            if length is not None:
                lines.append(b"Content-Length: %d\r\n" % length)
            elif self._bodyless:
                pass
            elif self.version == b"HTTP/1.1":
                self._chunked = True
                lines.append(b"Transfer-Encoding: chunked\r\n")
            else:
                self.keep_alive = False
        if not self.keep_alive:
            lines.append(b"Connection: close\r\n")
        lines.append(b"\r\n")
        # Held back until the first body bytes or the end, so that a small
        # response leaves in one packet.
        self._head = b"".join(lines)

    def flush(self) -> None:
        """Send the status line and headers now, even without body bytes."""
        if self._head:
            self._conn.send(self._head)
            self._head = b""

    def write(self, data: bytes) -> None:
        if self._bodyless or not data or self.done:
            return
        if self._chunked:
            data = b"%x\r\n%s\r\n" % (len(data), data)
        if self._head:
            data, self._head = self._head + data, b""
        self._conn.send(data)

    def finish(self) -> None:
        """The response is complete."""
        if self.done:
            return
        end = b"0\r\n\r\n" if self._chunked else b""
        if self._head or end:
            self._conn.send(self._head + end)
            self._head = b""
        self.done = True
        self._conn.request_done(self, self.keep_alive)
        self.ended()

    def cut(self) -> None:
        """The response cannot be completed: close the connection after what
        was written, so the client sees the body short of its framing."""
        if not self.done:
            self.done = True
            self.flush()
            self._conn.request_done(self, False)
            self.ended()

    def abort(self) -> None:
        if not self.done:
            self.done = True
            self._conn.request_done(self, False, abort=True)
            self.ended()

    def gone(self) -> None:
        """The client went away before the response ended."""
        if not self.done:
            self.done = True
            if self.on_gone is not None:
                self.on_gone()
            self.ended()

    def ended(self) -> None:
        end, self.on_end = self.on_end, None
        if end is not None:
            end()

    def register_producer(self, producer: Any) -> None:
        """Flow control: ``producer`` is paused while the client is slow."""
        self._conn.register_producer(producer)

    def unregister_producer(self) -> None:
        self._conn.unregister_producer()
