"""A client's request head, parsed by llhttp (httptools) and then held to the
front end's own rules.

llhttp, in its strict default mode, checks the request line's characters,
header names and values, line endings and the framing headers.  It knows a
fixed list of methods, and an Exchange front end must pass any method token
(BPROPFIND, X-MS-ENUMATTS, RPC_IN_DATA...): a method it does not know is
checked here and handed to llhttp as ``POST``, which llhttp frames exactly
like any method but CONNECT.  On top of llhttp, a front end refuses what a
back end or another proxy could read differently (see :meth:`HeadParser.parse`).
"""

from __future__ import annotations

import re
from typing import NamedTuple

import httptools

from frontend.errors import (
    BadRequest,
    ExpectationFailed,
    HeadersTooLarge,
    URITooLong,
    VersionNotSupported,
)
from frontend.wire.headers import TO_BACKEND_DROP, drop_connection_named
from frontend.wire.persistence import client_keeps_alive, connection_tokens

__all__ = [
    "KNOWN_METHODS",
    "MAX_HEAD",
    "MAX_HEADERS",
    "MAX_LINE",
    "HeadParser",
    "RequestHead",
    "check_request_line",
]

MAX_LINE = 16384  # the request line, or one header line, in bytes
MAX_HEAD = 65536  # the whole head
MAX_HEADERS = 100  # header fields in a head (as Apache's LimitRequestFields)
MAX_METHOD = 32
MAX_LENGTH_DIGITS = 18  # a Content-Length, in decimal digits (under 2**63)
_VERSIONS = frozenset({b"HTTP/1.1", b"HTTP/1.0"})

_METHOD = re.compile(rb"[!#$%&'*+.^_`|~0-9A-Za-z-]{1,32}\Z")
_VERSION = re.compile(rb"HTTP/[0-9]\.[0-9]\Z")
# The common request line, checked at once (anything else goes step by step).
_PLAIN_LINE = re.compile(rb"([!#$%&'*+.^_`|~0-9A-Za-z-]{1,32}) (/[^ #]*) (HTTP/1\.[01])\Z")
# RFC 3986 uri-host [":" port]: an IP-literal, or a reg-name (which covers
# IPv4 addresses) of unreserved, sub-delims and percent-encoded octets.
_HOST = re.compile(
    rb"(?:\[[0-9A-Fa-f:.]+\]|(?:[A-Za-z0-9\-._~!$&'()*+,;=]|%[0-9A-Fa-f]{2})+)(?::[0-9]*)?\Z"
)
_STAND_IN = b"POST"

# Headers the front end reads or sets: a name that is one of these with "_"
# for "-" is refused, since a back end that maps both to the same variable
# (as CGI does) would read a header the front end never checked.
_INTERPRETED = frozenset(
    {
        b"content-length",
        b"transfer-encoding",
        b"host",
        b"authorization",
        b"connection",
        b"expect",
        b"x-forwarded-for",
        b"x-front-end-server",
        b"front-end-https",
    }
)
# Connection may not name these: dropping them as hop-by-hop would strip the
# Host or credentials the back end needs, or the front end's own headers.
_NOT_HOP_BY_HOP = frozenset(
    {
        b"host",
        b"authorization",
        b"content-length",
        b"transfer-encoding",
        b"x-forwarded-for",
        b"x-front-end-server",
        b"front-end-https",
    }
)
_CANDIDATE_METHODS = (
    b"DELETE GET HEAD POST PUT OPTIONS TRACE COPY LOCK MKCOL MOVE PROPFIND PROPPATCH "
    b"SEARCH UNLOCK BIND REBIND UNBIND ACL REPORT MKACTIVITY CHECKOUT MERGE M-SEARCH "
    b"NOTIFY SUBSCRIBE UNSUBSCRIBE PATCH PURGE MKCALENDAR LINK UNLINK SOURCE QUERY"
).split()


def _llhttp_knows(method: bytes) -> bool:
    parser = httptools.HttpRequestParser(object())
    try:
        parser.feed_data(method + b" / HTTP/1.1\r\nHost: x\r\n\r\n")
    except httptools.HttpParserError:
        return False
    return True


#: The methods this build of llhttp parses itself (CONNECT aside); any other
#: token goes to it as a stand-in.  Probed once, so a new llhttp that learns
#: or drops a method needs no change here.
KNOWN_METHODS = frozenset(m for m in _CANDIDATE_METHODS if _llhttp_knows(m))


class RequestHead(NamedTuple):
    """A request head that passed every check.

    ``length`` is the body's length: 0 without a body, None when chunked.
    (A NamedTuple: one is made per request, and a frozen dataclass costs
    several times as much to build.)
    """

    method: bytes
    target: bytes
    version: bytes
    headers: list[tuple[bytes, bytes]]
    length: int | None
    keep_alive: bool
    expect_continue: bool
    end_to_end: list[tuple[bytes, bytes]]  # what goes on to the back end
    authorization: list[bytes]


def check_request_line(line: bytes) -> tuple[bytes, bytes, bytes]:
    """Method, target and version of a request line (without its CRLF).

    Exactly three parts separated by single spaces; the method a token of at
    most 32 bytes; an origin-form target without a fragment; HTTP/1.0 or 1.1.
    """
    plain = _PLAIN_LINE.match(line)
    if plain is not None and len(line) <= MAX_LINE and plain.group(1) != b"CONNECT":
        return plain.group(1, 2, 3)  # type: ignore[return-value]
    if len(line) > MAX_LINE:
        raise URITooLong(detail="request line over 16 KiB")
    parts = line.split(b" ")
    if len(parts) != 3:  # noqa: PLR2004 - method, target, version
        raise BadRequest(detail="request line not made of three parts")
    method, target, version = parts
    if not _METHOD.match(method):
        raise BadRequest(detail="the method is not a token of at most 32 bytes")
    if method == b"CONNECT":
        raise BadRequest(detail="CONNECT: a front end opens no tunnels")
    if version not in _VERSIONS:
        if _VERSION.match(version):
            raise VersionNotSupported(detail=f"version {version.decode()}")
        raise BadRequest(detail="malformed HTTP version")
    if target[:1] != b"/":
        raise BadRequest(
            "Only origin-form request targets (/path) are accepted.",
            detail="request-target not in origin form",
        )
    if b"#" in target:
        raise BadRequest(detail="a fragment in the request-target")
    return method, target, version


class HeadParser:
    """Parses request heads with one llhttp parser, kept from head to head.

    After a head without a body llhttp is ready for the next message; after
    one with a body (whose bytes llhttp never sees: the body is read by
    :mod:`frontend.wire.request_reader`) or an upgrade, a new parser is made.
    Each field is looked at once, as llhttp hands it over: the fields the
    front end checks are set aside, and the end-to-end ones (the rules of
    :mod:`frontend.wire.headers`) kept for the back end.
    """

    __slots__ = ("_complete", "_forward", "_found", "_headers", "_lookalike", "_parser", "_target")

    def __init__(self) -> None:
        self._parser: httptools.HttpRequestParser | None = None
        self._target = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self._found: list[list[bytes]] = []
        self._forward: list[tuple[bytes, bytes]] = []
        self._lookalike: bytes | None = None
        self._complete = False

    # llhttp's callbacks

    def on_url(self, url: bytes) -> None:
        self._target += url

    def on_header(self, name: bytes, value: bytes) -> None:
        pair = (name, value)
        self._headers.append(pair)
        low = name.lower()
        kind = _KIND.get(low)
        if kind is None:  # an end-to-end field
            if b"_" in low and low.replace(b"_", b"-") in _INTERPRETED:
                self._lookalike = name
            self._forward.append(pair)
        elif kind >= 0:
            self._found[kind].append(value.rstrip(b" \t"))  # llhttp keeps trailing whitespace
            if kind >= _HOST_FIELD:  # Host and Authorization go on unchanged
                self._forward.append(pair)

    def on_message_complete(self) -> None:
        self._complete = True

    def parse(self, head: bytes) -> RequestHead:
        """Parse and check a complete request head (request line to the blank line).

        Raises a :class:`~frontend.errors.ProxyError` for the client: 400 for
        anything malformed or ambiguous, 414, 417, 431 or 505.
        """
        eol = head.find(b"\r\n")
        method, target, version = check_request_line(head[:eol])
        fed = head if method in KNOWN_METHODS else _STAND_IN + head[len(method) :]
        parser = self._parser
        if parser is None:
            parser = self._parser = httptools.HttpRequestParser(self)
        self._target = b""
        self._headers = headers = list[tuple[bytes, bytes]]()
        self._found = [[], [], [], [], [], []]
        self._forward = []
        self._lookalike = None
        self._complete = False
        try:
            parser.feed_data(fed)
        except httptools.HttpParserUpgrade:
            self._complete = False  # Upgrade is hop-by-hop and ignored; the head is complete
        except httptools.HttpParserInvalidURLError as e:
            raise BadRequest(detail=f"request-target refused by llhttp: {e}") from None
        except httptools.HttpParserError as e:
            raise BadRequest(detail=f"refused by llhttp: {e}") from None
        finally:
            if not self._complete:
                self._parser = None
        if self._target != target:  # cannot differ; a guard against a stand-in slip
            raise BadRequest(detail="request-target read two ways")
        if len(headers) > MAX_HEADERS:
            raise HeadersTooLarge(detail=f"more than {MAX_HEADERS} header fields")
        if len(head) > MAX_LINE and max(map(len, head.split(b"\r\n"))) > MAX_LINE:
            raise HeadersTooLarge(detail="a header line over 16 KiB")
        if self._lookalike is not None:
            raise BadRequest(
                detail=f"header {self._lookalike[:40]!r} reads like one the front end checks"
            )
        return _check_fields(method, target, version, headers, self._found, self._forward)


# The fields the front end reads, by kind; from _HOST_FIELD on they also go on.
_LENGTH, _CODING, _CONNECTION, _EXPECT, _HOST_FIELD, _AUTHORIZATION = range(6)
_SPECIAL = {
    b"content-length": _LENGTH,
    b"transfer-encoding": _CODING,
    b"connection": _CONNECTION,
    b"expect": _EXPECT,
    b"host": _HOST_FIELD,
    b"authorization": _AUTHORIZATION,
}
_NO_TOKENS: frozenset[bytes] = frozenset()
_DROPPED = -1
#: Every field name that is not simply passed on: read (a kind), or dropped.
_KIND = {**dict.fromkeys(TO_BACKEND_DROP, _DROPPED), **_SPECIAL}
# Hosts seen, already checked (a client sends the same
# few over and over); bounded, emptied when full.
_GOOD_HOSTS: dict[bytes, bool] = {}
_REMEMBER = 1024


def _host_ok(host: bytes) -> bool:
    ok = _GOOD_HOSTS.get(host)
    if ok is None:
        ok = _HOST.match(host) is not None
        if len(_GOOD_HOSTS) >= _REMEMBER:
            _GOOD_HOSTS.clear()
        _GOOD_HOSTS[host] = ok
    return ok


def _check_fields(
    method: bytes,
    target: bytes,
    version: bytes,
    headers: list[tuple[bytes, bytes]],
    found: list[list[bytes]],
    forward: list[tuple[bytes, bytes]],
) -> RequestHead:
    """The front end's rules over the header fields llhttp accepted."""
    lengths, codings, connection, expect, hosts, authorization = found
    if len(hosts) != 1:
        raise BadRequest(detail="a request needs exactly one Host header")
    if not _host_ok(hosts[0]):
        raise BadRequest(detail="the Host header is not a host[:port]")
    tokens = connection_tokens(connection) if connection else _NO_TOKENS
    if tokens & _NOT_HOP_BY_HOP:
        raise BadRequest(detail="Connection names a header that is not hop-by-hop")
    length: int | None = 0
    if codings:
        if lengths:
            raise BadRequest(detail="both Content-Length and Transfer-Encoding")
        if version != b"HTTP/1.1":
            raise BadRequest(detail="Transfer-Encoding in an HTTP/1.0 request")
        if len(codings) != 1 or codings[0].lower() != b"chunked":
            raise BadRequest(detail="a transfer coding other than chunked")
        length = None
    elif lengths:
        value = lengths[0]
        if len(lengths) != 1 or not value.isdigit() or len(value) > MAX_LENGTH_DIGITS:
            raise BadRequest(detail="invalid Content-Length")
        length = int(value)
    expect_continue = False
    if expect:
        if len(expect) != 1 or expect[0].lower() != b"100-continue":
            raise ExpectationFailed(detail=f"Expect: {b', '.join(expect)[:60]!r}")
        expect_continue = version == b"HTTP/1.1"
    return RequestHead(
        method,
        target,
        version,
        headers,
        length,
        client_keeps_alive(version, tokens),
        expect_continue,
        drop_connection_named(forward, connection) if tokens else forward,
        authorization,
    )
