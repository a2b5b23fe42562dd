"""One client request as the handler sees it: its head, its body (read only
when the handler asks), and the response the handler writes to it.

:class:`IncomingRequest` is made by a client connection
(:mod:`frontend.wire.server`) as soon as a head is read; the connection is
reached through the :class:`ClientChannel` Protocol, which it implements.
"""

from __future__ import annotations

from collections.abc import Callable
from http import HTTPStatus
from typing import Protocol

from frontend.errors import ErrorAnswer
from frontend.wire.interfaces import BodySink, PushProducer
from frontend.wire.request_head import RequestHead

__all__ = [
    "ClientChannel",
    "IncomingRequest",
    "RequestHandler",
    "error_length",
    "error_page",
    "phrase_of",
]

_NO_BODY = frozenset({204, 304})
_PHRASES = {s.value: s.phrase.encode("ascii") for s in HTTPStatus}
Pairs = list[tuple[bytes, bytes]]


def phrase_of(code: int) -> bytes:
    return _PHRASES.get(code, b"Unknown")


def error_length(answer: ErrorAnswer) -> int:
    """The length of an error answer's one-line body."""
    return len(error_page(answer)[1])


def error_page(answer: ErrorAnswer) -> tuple[Pairs, bytes]:
    """The headers and one-line body of an error answer."""
    body = f"{answer.status} {answer.reason}\n".encode()
    headers = [(b"Content-Type", b"text/plain; charset=utf-8"), (b"Cache-Control", b"no-store")]
    return headers, body


class ClientChannel(Protocol):
    """What a request needs of its client connection."""

    peer: str
    secure: bool

    def send(self, data: bytes) -> None: ...

    def read_body(self, request: IncomingRequest, sink: BodySink) -> None: ...

    def pause_body(self) -> None: ...

    def resume_body(self) -> None: ...

    def body_unread(self) -> bool:
        """The handler never asked for the body, and it has not all arrived."""

    def stream_from(self, producer: PushProducer) -> None: ...

    def stop_streaming(self) -> None: ...

    def request_done(self, request: IncomingRequest, *, keep_alive: bool, abort: bool) -> None:
        """The response is over (``abort``: drop the connection at once)."""


class IncomingRequest:
    """One client request and its response.

    The body is a :class:`~frontend.wire.interfaces.BodySource`: nothing of
    it is read until :meth:`stream_to` (which also sends ``100 Continue`` to
    a client that waits for it).  The handler answers with :meth:`respond`,
    :meth:`write` and :meth:`finish` (or :meth:`cut` when the response cannot
    be completed).  ``on_gone`` is called if the client goes away before the
    response ends; ``on_end`` once when the request is over, whichever way.
    """

    __slots__ = (
        *("method", "target", "version", "headers", "keep_alive", "length", "peer", "secure"),
        *("end_to_end", "authorization"),
        *("code", "started", "done", "on_gone", "on_end", "expect_continue"),
        *("_conn", "_chunked", "_bodyless", "_head"),
    )

    def __init__(self, conn: ClientChannel, head: RequestHead) -> None:
        self._conn = conn
        self.method = head.method
        self.target = head.target
        self.version = head.version
        self.headers = head.headers
        self.end_to_end = head.end_to_end  # the headers that go on to the back end
        self.authorization = head.authorization
        self.keep_alive = head.keep_alive
        self.length = head.length
        self.expect_continue = head.expect_continue
        self.peer = conn.peer
        self.secure = conn.secure
        self.code = 0
        self.started = False
        self.done = False
        self.on_gone: Callable[[], None] | None = None
        self.on_end: Callable[[], None] | None = None
        self._chunked = False
        self._bodyless = False
        self._head = b""

    def header(self, name: bytes) -> list[bytes]:
        """Every value of header ``name`` (given lowercase)."""
        n = len(name)
        return [v for k, v in self.headers if len(k) == n and k.lower() == name]

    @property
    def has_body(self) -> bool:
        return self.length != 0

    # the body, as a BodySource

    def stream_to(self, sink: BodySink) -> None:
        self._conn.read_body(self, sink)

    def pause(self) -> None:
        self._conn.pause_body()

    def resume(self) -> None:
        self._conn.resume_body()

    # the response

    def respond(self, code: int, phrase: bytes, headers: Pairs, length: int | None) -> None:
        """Write the status line and headers.

        ``length`` is the body's length, or None when unknown: the body is
        then sent chunked (or, to an HTTP/1.0 client, delimited by closing
        the connection).  A HEAD request or a 204/304 answer has no body.
        """
        self.code = code
        self.started = True
        if self._conn.body_unread():
            self.keep_alive = False  # the body will not be read: the connection closes
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

    def answer(self, code: int, phrase: bytes, headers: Pairs, body: bytes) -> None:
        """A whole response at once (head and body in one write)."""
        self.respond(code, phrase, headers, len(body))
        if not self._bodyless and body:
            self._head += body
        self.finish()

    def answer_error(self, answer: ErrorAnswer, extra: Pairs | None = None) -> None:
        """Answer with an error page."""
        headers, body = error_page(answer)
        if extra:
            headers += extra
        self.answer(answer.status, phrase_of(answer.status), headers, body)

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
        self._conn.request_done(self, keep_alive=self.keep_alive, abort=False)
        self._ended()

    def cut(self) -> None:
        """The response cannot be completed: close the connection after what
        was written, so the client sees the body short of its framing."""
        if not self.done:
            self.done = True
            self.flush()
            self._conn.request_done(self, keep_alive=False, abort=False)
            self._ended()

    def abort(self) -> None:
        """Drop the connection at once."""
        if not self.done:
            self.done = True
            self._conn.request_done(self, keep_alive=False, abort=True)
            self._ended()

    def gone(self) -> None:
        """The client went away (or the connection gave up) before the end."""
        if not self.done:
            self.done = True
            if self.on_gone is not None:
                self.on_gone()
            self._ended()

    def _ended(self) -> None:
        end, self.on_end = self.on_end, None
        if end is not None:
            end()

    def register_producer(self, producer: PushProducer) -> None:
        """Flow control: ``producer`` is paused while the client is slow."""
        self._conn.stream_from(producer)

    def unregister_producer(self) -> None:
        self._conn.stop_streaming()


class RequestHandler(Protocol):
    """Answers client requests; called once per request, as soon as its head
    is read (the body is read only when the handler asks for it)."""

    def handle(self, request: IncomingRequest) -> None: ...
