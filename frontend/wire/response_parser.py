"""A back end's responses, parsed by llhttp (httptools) in its strict mode.

One back-end connection carries one exchange at a time; each exchange gets a
fresh llhttp parser (:meth:`ResponseParser.start`), which also lets the
answer to a HEAD request end at its head (llhttp cannot be told that a
response has no body because of the request's method).  Interim answers
(``100 Continue``) are reported and skipped; ``101`` is refused, as the
front end never asks to switch protocols.  Header values with control bytes,
bare CR or LF, Content-Length with Transfer-Encoding, a repeated
Content-Length: llhttp refuses them, and the front end answers 502.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import httptools

from frontend.wire.persistence import backend_reusable, connection_tokens

__all__ = ["Malformed", "ResponseEvents", "ResponseHead", "ResponseParser"]

MAX_HEAD = 65536
MAX_LINE = 16384
MAX_HEADERS = 100
_NO_BODY_CODES = frozenset({204, 304})

Pairs = list[tuple[bytes, bytes]]


class Malformed(Exception):
    """The back end's answer breaks HTTP/1.1; the message says how."""


@dataclass(frozen=True, slots=True)
class ResponseHead:
    """A final response's head.

    ``length``: the body's length (0 when it has none), None when chunked or
    ending with the connection; ``reusable``: the connection may carry
    another exchange once the body is over.
    """

    code: int
    phrase: bytes
    headers: Pairs
    length: int | None
    reusable: bool


class ResponseEvents(Protocol):
    """What a back-end connection is told while its response is parsed."""

    def response_interim(self, code: int) -> None: ...

    def response_head(self, head: ResponseHead) -> None: ...

    def response_data(self, data: bytes) -> None: ...


class ResponseParser:
    """Parses the responses of one back-end connection, one exchange at a time."""

    __slots__ = (
        *("_events", "_parser", "_phrase", "_headers", "_head", "_fed", "_interim"),
        *("_bodyless", "_skipping", "_until_close", "complete", "extra"),
    )

    def __init__(self, events: ResponseEvents) -> None:
        self._events = events
        self._parser = httptools.HttpResponseParser(self)
        self._phrase = b""
        self._headers: Pairs = []
        self._head: ResponseHead | None = None
        self._fed = 0
        self._interim = False
        self._bodyless = False
        self._skipping = False
        self._until_close = False
        self.complete = False  # the final response, body included, is over
        self.extra = False  # bytes came after it (the connection is then not reused)

    def start(self, bodyless: bool) -> None:
        """A new exchange; ``bodyless``: its request was HEAD.

        llhttp is ready for the next response once one has completed; after
        a HEAD answer (ended here, not by llhttp) a new parser is made.
        """
        if not self.complete or self._skipping or self.extra:
            self._parser = httptools.HttpResponseParser(self)
        self._phrase = b""
        self._headers = []
        self._head = None
        self._fed = 0
        self._interim = self._skipping = self._until_close = self.complete = self.extra = False
        self._bodyless = bodyless

    @property
    def head(self) -> ResponseHead | None:
        return self._head

    def feed(self, data: bytes) -> None:
        """Parse ``data``; raises :class:`Malformed` (or what an event raised)."""
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserCallbackError as e:
            if isinstance(e.__context__, Exception):
                raise e.__context__ from None
            raise Malformed(str(e)) from None
        except httptools.HttpParserUpgrade:
            raise Malformed("the back end switched protocols") from None
        except httptools.HttpParserError as e:
            raise Malformed(f"refused by llhttp: {e}") from None
        if self._head is None:
            self._fed += len(data)
            if self._fed > MAX_HEAD:
                raise Malformed("response head over 64 KiB")

    def eof(self) -> bool:
        """The connection closed: whether that ended the body cleanly (a body
        without a length or chunks ends with the connection)."""
        if self._until_close:
            self.complete = True
        return self.complete

    # llhttp's callbacks

    def on_message_begin(self) -> None:
        if self.complete:
            self.extra = True

    def on_status(self, phrase: bytes) -> None:
        self._phrase += phrase

    def on_header(self, name: bytes, value: bytes) -> None:
        if self.complete or self._head is not None:
            return  # trailers, or a message after the end: dropped
        if len(self._headers) >= MAX_HEADERS:
            raise Malformed(f"more than {MAX_HEADERS} header fields")
        if len(name) + len(value) > MAX_LINE:
            raise Malformed("a header line over 16 KiB")
        self._headers.append((name, value))

    def on_headers_complete(self) -> None:
        if self.complete:
            return
        parser = self._parser
        code = parser.get_status_code()
        if code < 200:
            if code == 101:
                raise Malformed("101 Switching Protocols")
            self._interim = True
            self._phrase = b""
            self._headers = []
            self._events.response_interim(code)
            return
        version = b"HTTP/" + parser.get_http_version().encode("ascii")
        headers = self._headers
        lengths: list[bytes] = []
        codings: list[bytes] = []
        connection: list[bytes] = []
        for name, value in headers:
            low = name.lower()
            if low == b"content-length":
                lengths.append(value)
            elif low == b"transfer-encoding":
                codings.append(value)
            elif low == b"connection":
                connection.append(value)
        length: int | None
        if self._bodyless or code in _NO_BODY_CODES:
            length, delimited = 0, True
        elif codings:
            last = b",".join(codings).rpartition(b",")[2].strip(b" \t").lower()
            length, delimited = None, last == b"chunked"
        elif lengths:
            length, delimited = int(lengths[0]), True
        else:
            length, delimited = None, False
        reusable = backend_reusable(version, connection_tokens(connection), delimited)
        head = ResponseHead(code, self._phrase, headers, length, reusable)
        self._head = head
        self._until_close = not delimited
        if length == 0:
            self.complete = True
            # llhttp expects the body a HEAD answer announces: ignore it
            self._skipping = self._bodyless
        self._events.response_head(head)

    def on_body(self, data: bytes) -> None:
        if self._skipping:
            self.extra = True
        else:
            self._events.response_data(data)

    def on_message_complete(self) -> None:
        if self._interim:
            self._interim = False
        else:
            self.complete = True
