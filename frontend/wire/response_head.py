"""A back end's response head: parsed strictly, and how its body is framed.

Pure functions, for :mod:`frontend.wire.upstream`.  Lines must end with CRLF;
header names must be tokens; Content-Length with Transfer-Encoding, or
lengths that disagree, are refused (:class:`Malformed`).
"""

from __future__ import annotations

__all__ = [
    "CHUNKED",
    "LENGTH",
    "MAX_HEAD",
    "MAX_HEADER_LINES",
    "Malformed",
    "UNTIL_CLOSE",
    "framing",
    "parse_head",
]

MAX_HEAD = 64 * 1024
MAX_HEADER_LINES = 100
_TCHAR = b"!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
LENGTH, CHUNKED, UNTIL_CLOSE = range(3)  # body framings


class Malformed(Exception):
    """The back end's answer breaks HTTP/1.1; the message says how."""


def parse_head(head: bytes) -> tuple[bool, int, bytes, list[tuple[bytes, bytes]]]:
    """(HTTP/1.1?, code, phrase, headers) of a response head, without its blank line."""
    lines = head.split(b"\r\n")
    nl = len(lines) - 1
    if nl > MAX_HEADER_LINES:
        raise Malformed(f"more than {MAX_HEADER_LINES} header lines")
    if head.count(b"\n") != nl or head.count(b"\r") != nl:
        raise Malformed("bare CR or LF in the response head")
    version, _, rest = lines[0].partition(b" ")
    code = rest[:3]
    if version not in (b"HTTP/1.1", b"HTTP/1.0") or len(code) != 3 or not code.isdigit():
        raise Malformed(f"bad status line {lines[0][:60]!r}")
    if rest[3:4] not in (b"", b" "):
        raise Malformed(f"bad status line {lines[0][:60]!r}")
    headers = []
    for i in range(1, nl + 1):
        name, colon, value = lines[i].partition(b":")
        if not colon or not name or name.translate(None, _TCHAR):
            raise Malformed(f"bad header line {lines[i][:60]!r}")
        headers.append((name, value.strip(b" \t")))
    return version == b"HTTP/1.1", int(code), rest[4:], headers


def framing(headers: list[tuple[bytes, bytes]], no_body: bool, keep: bool) -> tuple[int, int, bool]:
    """(framing, length or -1 when unknown, reusable) of a response from its headers."""
    lengths: list[bytes] = []
    codings: list[bytes] = []
    for name, value in headers:
        n = len(name)
        if n == 10 or n == 14 or n == 17:
            lname = name.lower()
            if lname == b"connection":
                if b"close" in [t.strip(b" \t") for t in value.lower().split(b",")]:
                    keep = False
            elif lname == b"content-length":
                lengths.append(value)
            elif lname == b"transfer-encoding":
                codings.append(value)
    if no_body:
        mode, length = LENGTH, 0
    elif codings:
        if lengths:
            raise Malformed("both Content-Length and Transfer-Encoding")
        last = b",".join(codings).rpartition(b",")[2].strip(b" \t").lower()
        mode, length = (CHUNKED, -1) if last == b"chunked" else (UNTIL_CLOSE, -1)
    elif lengths:
        value = lengths[0]
        if not value.isdigit() or len(value) > 18 or any(v != value for v in lengths):
            raise Malformed(f"bad Content-Length {value[:30]!r}")
        mode, length = LENGTH, int(value)
    else:
        mode, length = UNTIL_CLOSE, -1
    return mode, length, keep and mode != UNTIL_CLOSE
