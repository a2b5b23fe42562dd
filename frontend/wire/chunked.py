"""A client's chunked request body, decoded by llhttp in its strict mode.

Each body gets a parser of its own, primed with a fixed chunked head, so the
body's framing is llhttp's alone: chunk sizes of hex digits only, chunk
extensions of the RFC's grammar, CRLF everywhere, trailers checked as header
fields (and dropped).

The decoder must also tell where the body ends, so that the bytes after it
are read as the next request, and llhttp does not say how many bytes a
message took.  A chunked body always ends with CRLF CRLF (the last chunk's
line, or the last trailer, then the empty line), and llhttp allows no other
ending; so the data is fed up to each CRLF CRLF in turn, and the body ends
exactly where llhttp says the message completed.
"""

from __future__ import annotations

from collections.abc import Callable

import httptools

from frontend.errors import BadRequest, HeadersTooLarge

__all__ = ["ChunkedDecoder"]

_PRIMER = b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
_END = b"\r\n\r\n"
#: Framing bytes (chunk lines, extensions, trailers) allowed between two
#: pieces of payload, so that an endless chunk extension or trailer is refused.
MAX_OVERHEAD = 65536


class ChunkedDecoder:
    """Decodes one chunked body; payload goes to ``out``."""

    __slots__ = ("_got", "_out", "_overhead", "_parser", "_tail", "done")

    def __init__(self, out: Callable[[bytes], None]) -> None:
        self._out = out
        self._tail = b""  # the last bytes fed (at most 3), for an end split across reads
        self._overhead = 0
        self._got = 0
        self.done = False
        self._parser = httptools.HttpRequestParser(self)
        self._parser.feed_data(_PRIMER)

    # llhttp's callbacks

    def on_body(self, data: bytes) -> None:
        self._got += len(data)
        self._overhead = 0
        self._out(data)

    def on_message_complete(self) -> None:
        self.done = True

    # feeding

    def feed(self, data: bytes) -> int:
        """Decode what ``data`` holds of the body; return how many bytes were body.

        Raises :class:`~frontend.errors.BadRequest` when the framing is
        broken.  What ``out`` raises goes through unchanged.
        """
        pos, n = 0, len(data)
        while pos < n and not self.done:
            end = self._next_end(data, pos)
            stop = n if end < 0 else end
            piece = data if pos == 0 and stop == n else data[pos:stop]
            self._got = 0
            try:
                self._parser.feed_data(piece)
            except httptools.HttpParserCallbackError as e:
                # out() raised: llhttp wraps it; what out() raised goes on
                if isinstance(e.__context__, Exception):
                    raise e.__context__ from None
                raise
            except httptools.HttpParserError as e:
                raise BadRequest(detail=f"chunked body refused by llhttp: {e}") from None
            self._overhead += len(piece) - self._got
            if self._overhead > MAX_OVERHEAD:
                raise HeadersTooLarge(detail="chunk lines or trailers over 64 KiB")
            self._tail = (self._tail + piece)[-3:]
            if self.done and stop != end:  # llhttp ended the body elsewhere than at CRLF CRLF
                raise BadRequest(detail="chunked body ended without CRLF CRLF")
            pos = stop
        return pos

    def _next_end(self, data: bytes, pos: int) -> int:
        """Where in ``data`` the next CRLF CRLF after ``pos`` ends, or -1."""
        if self._tail:
            joined = self._tail + data[pos : pos + 3]
            i = joined.find(_END)
            if i >= 0:
                return pos + i + 4 - len(self._tail)
        i = data.find(_END, pos)
        return -1 if i < 0 else i + 4
