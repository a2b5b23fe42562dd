"""Reads a client's bytes as requests: a head, then its body when asked.

No I/O here: the connection gives bytes to :meth:`RequestReader.receive`,
asks for the next head with :meth:`RequestReader.head` and, once the handler
wants the body, for its bytes with :meth:`RequestReader.body`.  Bytes not
asked for stay in the buffer unread, so a request can be answered (401,
404, 413) before any byte of its body is looked at.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from frontend.errors import BadRequest, HeadersTooLarge, PayloadTooLarge, URITooLong
from frontend.wire.chunked import ChunkedDecoder
from frontend.wire.request_head import (
    MAX_HEAD,
    MAX_LINE,
    MAX_METHOD,
    HeadParser,
    RequestHead,
    check_request_line,
)

__all__ = ["RequestReader"]

_END = b"\r\n\r\n"
_METHOD_BYTE = re.compile(rb"[^!#$%&'*+.^_`|~0-9A-Za-z-]")


class RequestReader:
    """The requests in one client connection's bytes, in order."""

    __slots__ = (
        *("_buf", "_scanned", "_line_checked", "_left", "_decoder", "_size", "_out", "_heads"),
        "max_body",
    )

    def __init__(self, max_body: int) -> None:
        self.max_body = max_body
        self._buf = b""
        self._scanned = 0  # bytes of a partial head already searched for its end
        self._line_checked = False  # the partial head's request line passed
        self._left: int | None = None  # body bytes still to come (length framing)
        self._decoder: ChunkedDecoder | None = None  # chunked framing
        self._size = 0  # chunked payload so far
        self._out: Callable[[bytes], None] = _nowhere
        self._heads = HeadParser()

    @property
    def buffered(self) -> int:
        """Bytes received and not yet read."""
        return len(self._buf)

    @property
    def in_body(self) -> bool:
        """A head was read and its body is not over."""
        return self._left is not None or self._decoder is not None

    @property
    def partial_head(self) -> bool:
        """Bytes of a head that is not complete are buffered."""
        return not self.in_body and bool(self._buf)

    def receive(self, data: bytes) -> None:
        self._buf = self._buf + data if self._buf else data

    # heads

    def head(self) -> RequestHead | None:
        """The next request's head, or None until it is complete.

        Raises a :class:`~frontend.errors.ProxyError` for a head that is
        refused (the connection answers it and closes).
        """
        buf = self._skip_empty_lines()
        if not buf:
            return None
        end = buf.find(_END, max(0, self._scanned - 3))
        if end < 0:
            self._check_partial(buf)
            self._scanned = len(buf)
            return None
        end += 4
        if end > MAX_HEAD:
            raise HeadersTooLarge(detail="request head over 64 KiB")
        head = self._heads.parse(buf[:end])
        self._buf = buf[end:]
        self._scanned = 0
        self._line_checked = False
        if head.length is None:
            self._size = 0
            self._decoder = ChunkedDecoder(self._chunk)
        elif head.length:
            if head.length > self.max_body:
                raise PayloadTooLarge(detail=f"declared body of {head.length} bytes")
            self._left = head.length
        return head

    def _skip_empty_lines(self) -> bytes:
        """Drop the empty lines (CRLF or LF) a client may send before a request."""
        buf = self._buf
        i = 0
        while True:
            if buf.startswith(b"\r\n", i):
                i += 2
            elif buf.startswith(b"\n", i):
                i += 1
            else:
                break
        if i:
            self._buf = buf = buf[i:]
        return b"" if buf == b"\r" else buf

    def _check_partial(self, buf: bytes) -> None:
        """Refuse early what can never become a valid head."""
        if len(buf) > MAX_HEAD:
            raise HeadersTooLarge(detail="request head over 64 KiB")
        eol = buf.find(b"\r\n")
        if eol < 0:
            if len(buf) > MAX_LINE:
                raise URITooLong(detail="request line over 16 KiB")
            space = buf.find(b" ", 0, MAX_METHOD + 1)
            if _METHOD_BYTE.search(buf, 0, space if space >= 0 else MAX_METHOD + 1):
                raise BadRequest(detail="the request does not begin with a method")
            if space < 0 and len(buf) > MAX_METHOD:
                raise BadRequest(detail="the method is not a token of at most 32 bytes")
            if b"\n" in buf or b"\r" in buf[:-1]:
                raise BadRequest(detail="bare CR or LF in the request line")
            return
        if not self._line_checked:
            check_request_line(buf[:eol])
            self._line_checked = True
        crlf = buf.count(b"\r\n")
        if buf.count(b"\n") != crlf:
            raise BadRequest(detail="bare LF in the request head")
        if buf.count(b"\r") - buf.endswith(b"\r") != crlf:
            raise BadRequest(detail="bare CR in the request head")
        if len(buf) - buf.rfind(b"\n") > MAX_LINE:
            raise HeadersTooLarge(detail="a header line over 16 KiB")

    # bodies

    def body(self, out: Callable[[bytes], None]) -> bool:
        """Give ``out`` the body bytes buffered; True once the body is complete.

        Raises a :class:`~frontend.errors.ProxyError` when the body's framing
        is broken (400) or it grows over the limit (413).
        """
        left = self._left
        if left is not None:
            buf = self._buf
            if not buf:
                return False
            if len(buf) <= left:
                take, self._buf = buf, b""
            else:
                take, self._buf = buf[:left], buf[left:]
            left -= len(take)
            self._left = left or None
            out(take)
            return not left
        decoder = self._decoder
        if decoder is None:
            return True
        if self._buf:
            self._out = out
            used = decoder.feed(self._buf)
            self._buf = self._buf[used:]
        if not decoder.done:
            return False
        self._decoder = None
        return True

    def _chunk(self, data: bytes) -> None:
        self._size += len(data)
        if self._size > self.max_body:
            raise PayloadTooLarge(detail="chunked body over the limit")
        self._out(data)


def _nowhere(_data: bytes) -> None:
    raise AssertionError("chunked body data outside RequestReader.body")
