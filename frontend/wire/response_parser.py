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

from typing import NamedTuple, Protocol

import httptools

from frontend.wire.headers import TO_CLIENT_DROP, drop_connection_named
from frontend.wire.persistence import backend_reusable, connection_tokens

__all__ = ["Malformed", "ResponseEvents", "ResponseHead", "ResponseParser"]

MAX_HEAD = 65536
MAX_LINE = 16384
MAX_HEADERS = 100
_NO_BODY_CODES = frozenset({204, 304})
_CONTINUE, _SWITCHING_PROTOCOLS, _OK = 100, 101, 200  # ints: an enum member costs a lookup

Pairs = list[tuple[bytes, bytes]]


class Malformed(Exception):
    """The back end's answer breaks HTTP/1.1; the message says how."""


class ResponseHead(NamedTuple):
    """A final response's head.

    ``length``: the body's length (0 when it has none), None when chunked or
    ending with the connection; ``reusable``: the connection may carry
    another exchange once the body is over; ``end_to_end``: the headers that
    go on to the client (the rules of :mod:`frontend.wire.headers`).
    """

    code: int
    phrase: bytes
    headers: Pairs
    length: int | None
    reusable: bool
    end_to_end: Pairs


class ResponseEvents(Protocol):
    """What a back-end connection is told while its response is parsed."""

    def response_interim(self, code: int) -> None: ...

    def response_head(self, head: ResponseHead) -> None: ...

    def response_data(self, data: bytes) -> None: ...


_LENGTH, _CODING, _CONNECTION = range(3)
_DROPPED = -1
#: Every field name that is not simply relayed: read (a kind), or dropped.
_KIND = {
    **dict.fromkeys(TO_CLIENT_DROP, _DROPPED),
    b"content-length": _LENGTH,
    b"transfer-encoding": _CODING,
    b"connection": _CONNECTION,
}


class ResponseParser:
    """Parses the responses of one back-end connection, one exchange at a time."""

    __slots__ = (
        *("_events", "_parser", "_phrase", "_headers", "_found", "_forward", "_head"),
        *("_size", "_feeding", "_interim", "_bodyless", "_skipping", "_until_close"),
        *("_seen", "_left", "_renew", "complete", "extra"),
    )

    def __init__(self, events: ResponseEvents) -> None:
        self._events = events
        self._parser = httptools.HttpResponseParser(self)
        self._phrase = b""
        self._headers: Pairs = []
        self._found: list[list[bytes]] = [[], [], []]
        self._forward: Pairs = []
        self._head: ResponseHead | None = None
        self._size = 0  # bytes fed before this read, while no head was complete
        self._feeding = 0  # bytes of the read being parsed
        self._interim = False
        self._bodyless = False
        self._skipping = False
        self._until_close = False
        self._seen = 0  # body bytes llhttp gave
        self._left: int | None = None  # body bytes to come, read without llhttp
        self._renew = False  # llhttp did not see the end: the next exchange needs a new one
        self.complete = False  # the final response, body included, is over
        self.extra = False  # bytes came after it (the connection is then not reused)

    def start(self, *, bodyless: bool) -> None:
        """A new exchange; ``bodyless``: its request was HEAD.

        llhttp is ready for the next response once one has completed; after
        a HEAD answer (ended here, not by llhttp) a new parser is made.
        """
        if not self.complete or self._skipping or self.extra or self._renew:
            self._parser = httptools.HttpResponseParser(self)
        self._new_head()
        self._head = None
        self._interim = self._skipping = self._until_close = self.complete = self.extra = False
        self._renew = False
        self._seen = 0
        self._left = None
        self._bodyless = bodyless

    def _new_head(self) -> None:
        self._phrase = b""
        self._headers = []
        self._found = [[], [], []]
        self._forward = []
        self._size = 0

    @property
    def head(self) -> ResponseHead | None:
        return self._head

    def feed(self, data: bytes) -> None:
        """Parse ``data``; raises :class:`Malformed` (or what an event raised).

        Once the head of an answer with a Content-Length is read, the rest of
        its body is only counted, not fed to llhttp: its framing is that
        count, and the bytes go on as they came (llhttp would copy them).
        """
        left = self._left
        if left is not None:
            n = len(data)
            if n < left:
                self._left = left - n
                self._events.response_data(data)
                return
            self._left = None
            self.complete = True
            if n > left:
                self.extra = True  # bytes after the body: the connection is not reused
                data = data[:left]
            self._events.response_data(data)
            return
        self._feeding = len(data)
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
        head = self._head
        if head is not None and not self.complete and head.length and not self._bodyless:
            self._left = head.length - self._seen  # the rest is counted (above)
            self._renew = True
        if head is None:
            self._size += len(data)
            if self._size > MAX_HEAD:
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
        # (the limits are checked once the head is complete: _check_limits)
        if self._head is not None:
            return  # trailers, or a message after the end: dropped
        pair = (name, value.rstrip(b" \t"))  # llhttp keeps trailing whitespace
        self._headers.append(pair)
        kind = _KIND.get(name.lower())
        if kind is None:
            self._forward.append(pair)
        elif kind >= 0:
            self._found[kind].append(pair[1])

    def _check_limits(self) -> None:
        """At most 100 fields, none over 16 KiB, 64 KiB in all (measured
        exactly only when that many bytes came in)."""
        headers = self._headers
        if len(headers) > MAX_HEADERS:
            raise Malformed(f"more than {MAX_HEADERS} header fields")
        if self._size + self._feeding <= MAX_LINE:
            return
        sizes = [len(name) + len(value) for name, value in headers]
        if max(sizes, default=0) > MAX_LINE:
            raise Malformed("a header line over 16 KiB")
        if sum(sizes) + 4 * len(sizes) + len(self._phrase) + 16 > MAX_HEAD:
            raise Malformed("response head over 64 KiB")

    def on_headers_complete(self) -> None:
        if self._head is not None:
            return
        self._check_limits()
        parser = self._parser
        code = parser.get_status_code()
        if code < _OK:
            if code < _CONTINUE or code == _SWITCHING_PROTOCOLS:
                raise Malformed(f"status {code}")
            self._interim = True
            self._new_head()
            self._events.response_interim(code)
            return
        lengths, codings, connection = self._found
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
        tokens = connection_tokens(connection) if connection else _NO_TOKENS
        version = b"HTTP/" + parser.get_http_version().encode("ascii")
        reusable = backend_reusable(version, tokens, delimited=delimited)
        forward = drop_connection_named(self._forward, connection) if tokens else self._forward
        head = ResponseHead(code, self._phrase, self._headers, length, reusable, forward)
        self._head = head
        self._until_close = not delimited
        if length == 0:
            self.complete = True
            # llhttp expects the body a HEAD answer announces: ignore it
            self._skipping = self._bodyless
        self._events.response_head(head)

    def on_body(self, data: bytes) -> None:
        if self._skipping or self.complete:
            self.extra = True  # a HEAD answer's body, or a second response's
        else:
            self._seen += len(data)
            self._events.response_data(data)

    def on_message_complete(self) -> None:
        if self._interim:
            self._interim = False
        else:
            self.complete = True


_NO_TOKENS: frozenset[bytes] = frozenset()
