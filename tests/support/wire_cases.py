"""The differential table: hostile or unusual client inputs, what feproxy must
answer to each, and what llhttp alone (httptools, strict default mode) says.

Every case is the complete byte string a client sends, with the statuses
feproxy must answer (one per request it answers, in order) and the rule that
explains a refusal.  Requests target ``/exchweb/case-<id>/<n>`` (``n`` counts
the requests of the case from 1), a static vdir the stub farm echoes, so the
farm's records tell exactly which requests of which case reached a back end.

The differential rule: whenever llhttp refuses an input, feproxy refuses it
too; it never forwards more requests of it than llhttp completed before its
error.  One exception class: a method token llhttp does not know (BPROPFIND,
POLL, X-MS-ENUMATTS, RPC_IN_DATA, ...) is accepted and forwarded unchanged
by feproxy; for such a case llhttp is asked again with that method replaced
by POST, and that answer is the one feproxy is held to.

``python -m tests.support.wire_cases --table`` runs every case against a real
``feproxy serve`` in front of the stub farm and prints the table as Markdown
(``--expected`` prints the expectations without running anything).
"""

from __future__ import annotations

import argparse
import functools
import re
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import httptools

__all__ = [
    "CASES",
    "HOST",
    "MAX_BODY_SIZE",
    "Differential",
    "Verdict",
    "WireCase",
    "differential",
    "format_table",
    "llhttp_knows",
    "llhttp_verdict",
    "main",
    "markdown_table",
]

HOST = b"mail.example.com"
#: The front end's max_body_size in the differential configuration.
MAX_BODY_SIZE = 1 << 20

_TOKEN_METHOD = re.compile(rb"[!#$%&'*+.^_`|~0-9A-Za-z-]{1,32}\Z")
_ID = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*\Z")


# llhttp alone


class Verdict(NamedTuple):
    """What llhttp says of an input: whether it accepts all of it, how, and how
    many complete messages it saw (before its error, when it refuses)."""

    accepted: bool
    detail: str
    messages: int


class _Count:
    """httptools callbacks that only count messages."""

    def __init__(self) -> None:
        self.begun = 0
        self.complete = 0

    def on_message_begin(self) -> None:
        self.begun += 1

    def on_message_complete(self) -> None:
        self.complete += 1


def llhttp_verdict(raw: bytes) -> Verdict:
    """Feed ``raw`` to a fresh ``httptools.HttpRequestParser`` (no leniency)."""
    count = _Count()
    parser = httptools.HttpRequestParser(count)
    try:
        parser.feed_data(raw)
    except httptools.HttpParserUpgrade as upgrade:
        # CONNECT, or Upgrade with Connection: upgrade: llhttp stops parsing
        # HTTP there; the rest belongs to the other protocol.
        detail = f"upgrade: stops after byte {upgrade.args[0]}"
        return Verdict(accepted=True, detail=detail, messages=count.complete)
    except httptools.HttpParserError as error:
        kind = type(error).__name__.removeprefix("HttpParser").removesuffix("Error")
        prefix = f"{kind}: " if kind else ""
        return Verdict(accepted=False, detail=f"{prefix}{error}", messages=count.complete)
    if count.begun > count.complete:
        detail = "ok, a message still incomplete"
        return Verdict(accepted=True, detail=detail, messages=count.complete)
    return Verdict(accepted=True, detail="ok", messages=count.complete)


@functools.cache
def llhttp_knows(method: bytes) -> bool:
    """Whether llhttp knows ``method`` (it refuses every method it does not know)."""
    probe = method + b" / HTTP/1.1\r\nHost: a\r\n\r\n"
    count = _Count()
    try:
        httptools.HttpRequestParser(count).feed_data(probe)
    except httptools.HttpParserInvalidMethodError:
        return False
    except (httptools.HttpParserError, httptools.HttpParserUpgrade):
        return True
    return True


# The cases


@dataclass(frozen=True)
class WireCase:
    """One row of the table.

    ``template`` holds placeholders: ``@T<n>@`` is the marker path of request
    ``n``, ``@H@`` the Host header line.  ``expect`` has one status per answer
    feproxy must give, in order; a request with a 2xx status there reaches the
    back end, every other does not.  ``body_error``: the refusal is found in
    the body, after the head was accepted, so feproxy may also just close
    (the back end may have seen the head, never a complete request).
    ``stays_open``: the connection stays open after the last answer.
    ``forwarded_header`` must reach the back end as (name, value), decoded as
    latin-1; ``dropped_header`` must not.
    """

    id: str
    group: str
    template: bytes
    expect: tuple[int, ...]
    rule: str
    split: bool = False
    body_error: bool = False
    stays_open: bool = False
    forwarded_header: tuple[str, str] | None = None
    dropped_header: str | None = None
    methods: tuple[bytes, ...] = ()  # when the templates cannot tell (a body before)

    @property
    def raw(self) -> bytes:
        """The bytes the client sends."""
        return _fill(self.id, self.template)

    @property
    def tag(self) -> str:
        """What every request path of this case (and no other) contains."""
        return f"/case-{self.id}/"

    def method(self, n: int) -> bytes:
        """The method of request ``n`` as written (b"" when there is none)."""
        if self.methods:
            return self.methods[n - 1]
        found = re.search(rb"(?:^|[\r\n])([^\s]*) @T%d@" % n, self.template)
        return found.group(1) if found else b""

    @property
    def forwards(self) -> tuple[tuple[int, bytes], ...]:
        """(n, method) of every request that must reach the back end, in order."""
        return tuple((n, self.method(n)) for n, s in enumerate(self.expect, 1) if 200 <= s < 300)

    @property
    def reaches_backend(self) -> bool:
        return bool(self.forwards)

    @property
    def refused(self) -> bool:
        """Whether the last answer is a refusal (the connection then closes)."""
        return self.expect[-1] >= 400

    @property
    def expected_text(self) -> str:
        text = " ".join(str(s) for s in self.expect)
        return f"{text} or close" if self.body_error else text

    def unknown_methods(self) -> tuple[bytes, ...]:
        """Method tokens of this case (1 to 32 bytes) that llhttp does not know."""
        out: list[bytes] = []
        for n in range(1, len(self.expect) + 1):
            m = self.method(n)
            if _TOKEN_METHOD.match(m) and not llhttp_knows(m) and m not in out:
                out.append(m)
        return tuple(out)

    def known_method_raw(self) -> bytes:
        """The bytes with every method llhttp does not know replaced by POST."""
        template = self.template
        for n in range(1, len(self.expect) + 1):
            m = self.method(n)
            if _TOKEN_METHOD.match(m) and not llhttp_knows(m):
                template = re.sub(
                    rb"(^|[\r\n])" + re.escape(m) + rb"( @T%d@)" % n, rb"\1POST\2", template
                )
        return _fill(self.id, template)


def _fill(case_id: str, template: bytes) -> bytes:
    raw = template.replace(b"@H@", b"Host: " + HOST + b"\r\n")
    for n in range(1, 10):
        raw = raw.replace(b"@T%d@" % n, f"/exchweb/case-{case_id}/{n}".encode())
    return raw


class Differential(NamedTuple):
    """llhttp's verdict on a case and what it allows feproxy to forward."""

    verdict: Verdict  # on the bytes as sent
    judged: Verdict  # on the bytes feproxy is held to (unknown methods as POST)
    unknown_methods: tuple[bytes, ...]

    @property
    def limit(self) -> int | None:
        """At most how many requests feproxy may forward (None: no limit)."""
        return None if self.judged.accepted else self.judged.messages

    def summary(self) -> str:
        if self.unknown_methods:
            names = ",".join(m.decode("latin-1") for m in self.unknown_methods)
            return f"unknown method {names}; as POST: {_short(self.judged)}"
        return _short(self.verdict)


def _short(v: Verdict) -> str:
    if v.accepted:
        return f"accepts {v.messages}: {v.detail}"
    return f"refuses after {v.messages}: {v.detail}"


def differential(case: WireCase) -> Differential:
    verdict = llhttp_verdict(case.raw)
    unknown = case.unknown_methods()
    judged = llhttp_verdict(case.known_method_raw()) if unknown else verdict
    return Differential(verdict, judged, unknown)


# Building blocks of the templates

CRLF = b"\r\n"
LINE = b"GET @T1@ HTTP/1.1\r\n"


def _lines(headers: Iterable[bytes]) -> bytes:
    return b"".join(h + CRLF for h in headers)


def get(*headers: bytes, method: bytes = b"GET", n: int = 1) -> bytes:
    """A bodyless HTTP/1.1 request with Host and ``headers``."""
    return method + b" @T%d@ HTTP/1.1\r\n@H@" % n + _lines(headers) + CRLF


def closing(*headers: bytes, method: bytes = b"GET", n: int = 1) -> bytes:
    """The same, asking the front end to close the connection after it."""
    return get(*headers, b"Connection: close", method=method, n=n)


def head_of(line: bytes, *headers: bytes) -> bytes:
    """A request head from a request line (without CRLF), Host, ``headers``."""
    return line + CRLF + b"@H@" + _lines(headers) + CRLF


def post(body: bytes, *headers: bytes, n: int = 1, length: bool = True) -> bytes:
    cl = [b"Content-Length: %d" % len(body)] if length else []
    return b"POST @T%d@ HTTP/1.1\r\n@H@" % n + _lines([*cl, *headers]) + CRLF + body


def chunked(body: bytes, *headers: bytes, n: int = 1) -> bytes:
    """A chunked POST whose body bytes (chunks and trailers) are ``body``."""
    return (
        b"POST @T%d@ HTTP/1.1\r\n@H@Transfer-Encoding: chunked\r\n" % n
        + _lines(headers)
        + CRLF
        + body
    )


def with_te(value: bytes, *headers: bytes, body: bytes = b"3\r\nabc\r\n0\r\n\r\n") -> bytes:
    """A POST whose Transfer-Encoding line is ``value`` exactly (name included)."""
    return b"POST @T1@ HTTP/1.1\r\n@H@" + _lines([value, *headers]) + CRLF + body


def with_cl(value: bytes, body: bytes = b"abcde") -> bytes:
    """A POST whose Content-Length line is ``value`` exactly (name included)."""
    return b"POST @T1@ HTTP/1.1\r\n@H@" + value + CRLF + CRLF + body


ABC = b"3\r\nabc\r\n0\r\n\r\n"


def _chunk(data: bytes) -> bytes:
    """``data`` as one chunk and the last chunk."""
    return b"%x\r\n%s\r\n0\r\n\r\n" % (len(data), data)


# Rules, as the refusals state them

R_LINE = "the request line is method SP request-target SP HTTP-version CRLF, single spaces"
R_METHOD = "the method is a token (RFC 9110 tchar) of 1 to 32 bytes"
R_ANY_METHOD = "any method token is accepted and forwarded unchanged"
R_UNKNOWN = "a method llhttp does not know is still a token: forwarded unchanged"
R_ORIGIN = "only origin-form request-targets (beginning with /)"
R_URL_CHARS = "no control byte, SP, HTAB or byte 0x80-0xFF in the request-target"
R_FRAGMENT = "no fragment (#) in the request-target"
R_DOTS = "no dot-segments in the path (checked by routing, before any back end)"
R_SLASHES = "no encoded slash or empty segment in the path (routing)"
R_BACKSLASH = "no backslash, raw or encoded, in the path (routing)"
R_DOUBLE = "no double-encoded dot, slash or backslash in the path (routing)"
R_414 = "a request line over 16384 bytes is answered 414"
R_505 = "only HTTP/1.0 and HTTP/1.1 are served; another HTTP/d.d is answered 505"
R_VERSION = "the HTTP-version is HTTP/d.d exactly (case-sensitive)"
R_NAME = "a header name is a token with no whitespace before the colon"
R_VALUE = "no control byte but HTAB in a header value"
R_OBS_TEXT = "bytes 0x80-0xFF in a header value are obs-text, allowed"
R_FOLD = "obsolete line folding is refused"
R_BARE = "no bare CR or bare LF in the request head"
R_431_LINE = "a header line over 16 KiB is answered 431"
R_431_COUNT = "more than 100 header fields is answered 431"
R_431_HEAD = "a request head over 64 KiB is answered 431"
R_HOST_ONE = "exactly one Host header, in HTTP/1.0 and HTTP/1.1 alike"
R_HOST_SYNTAX = "Host must be a valid uri-host[:port]"
R_CL = "Content-Length is one plain decimal number, in one header"
R_CL_TE = "Content-Length together with Transfer-Encoding is refused"
R_TE = "Transfer-Encoding is one header whose value is chunked (any case)"
R_TE_10 = "Transfer-Encoding in an HTTP/1.0 request is refused"
R_413 = "a body over max_body_size is answered 413"
R_UNDERSCORE = "a name equal, with _ read as -, to a header the front end reads is refused"
R_CONNECTION = "Connection may not name Host, Authorization, framing or front-end headers"
R_EXPECT = "Expect: 100-continue is the only expectation; any other is answered 417"
R_CHUNK_SIZE = "a chunk size is hex digits only, at most 2^63"
R_CHUNK_EXT = "a chunk extension is ;token[=token|quoted-string]"
R_CHUNK_EXT_LLHTTP = (
    "chunk extensions follow llhttp's strict grammar, which allows an empty name or value"
)
R_CHUNK_HUGE = (
    "a chunk announced larger than max_body_size is refused as its bytes arrive: "
    "here they stop, so the body times out (408)"
)
R_CHUNK_CRLF = "CRLF after the chunk-size line, after each chunk's data and the last chunk"
R_TRAILER = "trailer fields follow the header field rules"
R_PIPELINE = "pipelined requests are answered in order"
R_AFTER_REFUSAL = "after a refusal nothing more is answered"
R_HTTP10 = "an HTTP/1.0 connection is closed after its answer"
R_CLOSE = "Connection: close closes the connection after the answer"
R_EMPTY_LINES = "empty lines (CRLF or bare LF) before a request line are ignored"
R_OWS = "whitespace around a field value (SP, HTAB) is not part of it"
R_408 = "a body that does not arrive within body_timeout is answered 408"

KNOWN_METHODS = (
    b"GET",
    b"POST",
    b"PUT",
    b"DELETE",
    b"OPTIONS",
    b"TRACE",
    b"PATCH",
    b"PROPFIND",
    b"PROPPATCH",
    b"MKCOL",
    b"COPY",
    b"MOVE",
    b"LOCK",
    b"UNLOCK",
    b"SEARCH",
    b"SUBSCRIBE",
    b"UNSUBSCRIBE",
    b"NOTIFY",
    b"REPORT",
)
EXCHANGE_METHODS = (
    b"BPROPFIND",
    b"BPROPPATCH",
    b"BCOPY",
    b"BMOVE",
    b"BDELETE",
    b"POLL",
    b"X-MS-ENUMATTS",
    b"RPC_IN_DATA",
    b"RPC_OUT_DATA",
)


def _group(name: str, rows: Iterable[tuple[Any, ...]]) -> list[WireCase]:
    """Cases ``<name>-<id>`` from rows (id, template, status(es), rule[, options])."""
    out = []
    for row in rows:
        case_id, template, expect, rule = row[:4]
        options: dict[str, Any] = dict(row[4]) if len(row) > 4 else {}
        statuses = (expect,) if isinstance(expect, int) else tuple(expect)
        if "stays_open" not in options:
            raw = _fill(f"{name}-{case_id}", template)
            options["stays_open"] = (
                200 <= statuses[-1] < 300
                and not options.get("body_error")
                and not re.search(rb"(?i)\r\nconnection:[^\r\n]*close", raw)
                and b" HTTP/1.0\r\n" not in raw
            )
        out.append(
            WireCase(
                id=f"{name}-{case_id}",
                group=name,
                template=template,
                expect=statuses,
                rule=rule,
                **options,
            )
        )
    return out


SPLIT: dict[str, object] = {"split": True}
BODY: dict[str, object] = {"body_error": True}
BODY_SPLIT: dict[str, object] = {"body_error": True, "split": True}


def _big_target(case_id: str, size: int) -> bytes:
    """A request line of exactly ``size`` bytes (without CRLF) to marker 1 of ``case_id``."""
    fixed = len(_fill(case_id, b"GET @T1@/ HTTP/1.1"))
    return b"GET @T1@/" + b"a" * (size - fixed) + b" HTTP/1.1"


def inner_request(case_id: str, n: int) -> bytes:
    """Request ``n`` of ``case_id`` written out (for bodies whose length counts)."""
    return _fill(case_id, get(n=n))


LINE_CASES = _group(
    "line",
    [
        ("ok", get(), 200, "a well-formed request is forwarded", SPLIT),
        ("leading-crlf", b"\r\n\r\n" + get(), 200, R_EMPTY_LINES, SPLIT),
        ("leading-lf", b"\n\n" + get(), 200, R_EMPTY_LINES, SPLIT),
        ("leading-mixed", b"\r\n\n\r\n" + get(), 200, R_EMPTY_LINES),
        ("leading-cr", b"\r" + get(), 400, R_BARE + " (a lone CR is not an empty line)", SPLIT),
        ("two-spaces", head_of(b"GET  @T1@ HTTP/1.1"), 400, R_LINE, SPLIT),
        ("two-spaces-version", head_of(b"GET @T1@  HTTP/1.1"), 400, R_LINE),
        ("tab-after-method", head_of(b"GET\t@T1@ HTTP/1.1"), 400, R_LINE),
        ("tab-before-version", head_of(b"GET @T1@\tHTTP/1.1"), 400, R_LINE),
        ("trailing-space", head_of(b"GET @T1@ HTTP/1.1 "), 400, R_LINE, SPLIT),
        ("leading-space", head_of(b" GET @T1@ HTTP/1.1"), 400, R_LINE),
        ("no-version", b"GET @T1@\r\n\r\n", 400, R_LINE + " (no HTTP/0.9 simple request)"),
        ("no-target", head_of(b"GET  HTTP/1.1"), 400, R_LINE),
        ("bare-lf", b"GET @T1@ HTTP/1.1\n@H@\r\n", 400, R_BARE, SPLIT),
        ("bare-cr", head_of(b"GET @T1@ HTTP/1.1\r"), 400, R_BARE),
        ("only-lf", b"GET @T1@ HTTP/1.1\nHost: mail.example.com\n\n", 400, R_BARE),
    ],
)

METHOD_CASES = _group(
    "method",
    [
        *[(m.decode().lower(), closing(method=m), 200, R_ANY_METHOD) for m in KNOWN_METHODS],
        ("head", closing(method=b"HEAD"), 200, R_ANY_METHOD),
        *[
            (
                m.decode().lower().replace("_", "-"),
                closing(method=m),
                200,
                R_UNKNOWN,
                SPLIT if m in (b"BPROPFIND", b"X-MS-ENUMATTS", b"RPC_IN_DATA") else {},
            )
            for m in EXCHANGE_METHODS
        ],
        (
            "rpc-in-data-body",
            b"RPC_IN_DATA @T1@ HTTP/1.1\r\n@H@Content-Length: 4\r\nConnection: close\r\n\r\nabcd",
            200,
            R_UNKNOWN,
        ),
        ("lowercase", closing(method=b"get"), 200, R_UNKNOWN + " (methods are case-sensitive)"),
        ("all-tchar", closing(method=b"M!#$%&'*+.^_`|~X"), 200, R_ANY_METHOD),
        ("32-bytes", closing(method=b"M" * 32), 200, R_METHOD),
        ("33-bytes", closing(method=b"M" * 33), 400, R_METHOD),
        ("at-sign", closing(method=b"G@T"), 400, R_METHOD),
        ("parenthesis", closing(method=b"GET("), 400, R_METHOD),
        ("colon", closing(method=b"GET:"), 400, R_METHOD),
        ("nul", closing(method=b"GE\x00T"), 400, R_METHOD),
        ("high-byte", closing(method=b"G\xc9T"), 400, R_METHOD),
        ("connect-authority", head_of(b"CONNECT mail.example.com:443 HTTP/1.1"), 400, R_ORIGIN),
        (
            "connect-origin",
            closing(method=b"CONNECT"),
            400,
            "CONNECT takes an authority-form target only: never forwarded",
        ),
    ],
)

TARGET_CASES = _group(
    "target",
    [
        ("asterisk", head_of(b"OPTIONS * HTTP/1.1"), 400, R_ORIGIN, SPLIT),
        ("absolute", head_of(b"GET http://mail.example.com@T1@ HTTP/1.1"), 400, R_ORIGIN),
        ("authority", head_of(b"GET mail.example.com:443 HTTP/1.1"), 400, R_ORIGIN),
        ("relative", head_of(b"GET exchweb/case-target-relative/1 HTTP/1.1"), 400, R_ORIGIN),
        ("query-only", head_of(b"GET ?a=b HTTP/1.1"), 400, R_ORIGIN),
        ("soh", head_of(b"GET @T1@a\x01b HTTP/1.1"), 400, R_URL_CHARS),
        ("nul", head_of(b"GET @T1@a\x00b HTTP/1.1"), 400, R_URL_CHARS),
        ("del", head_of(b"GET @T1@a\x7fb HTTP/1.1"), 400, R_URL_CHARS),
        ("esc-query", head_of(b"GET @T1@?a=\x1b HTTP/1.1"), 400, R_URL_CHARS),
        ("space-inside", head_of(b"GET @T1@a b HTTP/1.1"), 400, R_LINE),
        ("tab-path", head_of(b"GET @T1@a\tb HTTP/1.1"), 400, R_URL_CHARS),
        ("tab-query", head_of(b"GET @T1@?a=b\tc HTTP/1.1"), 400, R_URL_CHARS, SPLIT),
        ("high-path", head_of(b"GET @T1@caf\xc3\xa9 HTTP/1.1"), 400, R_URL_CHARS),
        ("high-query", head_of(b"GET @T1@?q=\xff HTTP/1.1"), 400, R_URL_CHARS),
        ("fragment", closing().replace(b"@T1@", b"@T1@#frag"), 400, R_FRAGMENT, SPLIT),
        ("fragment-query", closing().replace(b"@T1@", b"@T1@?a=b#c"), 400, R_FRAGMENT),
        ("encoded-hash", closing().replace(b"@T1@", b"@T1@a%23b"), 200, "an encoded # is data"),
        (
            "visible-ascii",
            closing().replace(b"@T1@", b'@T1@{a}|b^c"d<e>`f'),
            200,
            "visible ASCII that llhttp allows in a URL is forwarded",
        ),
        (
            "query-dots",
            closing().replace(b"@T1@", b"@T1@?a=../b//c?d"),
            200,
            "the query is not a path",
        ),
        ("pct-utf8", closing().replace(b"@T1@", b"@T1@caf%C3%A9"), 200, "percent-encoded UTF-8"),
        ("dotdot", closing().replace(b"@T1@", b"@T1@/../x"), 400, R_DOTS),
        ("dot", closing().replace(b"@T1@", b"@T1@/./x"), 400, R_DOTS),
        ("dotdot-encoded", closing().replace(b"@T1@", b"@T1@/%2e%2e/x"), 400, R_DOTS, SPLIT),
        ("dotdot-half-encoded", closing().replace(b"@T1@", b"@T1@/.%2E/x"), 400, R_DOTS),
        ("slash-encoded", closing().replace(b"@T1@", b"@T1@a%2fb"), 400, R_SLASHES),
        ("slash-encoded-upper", closing().replace(b"@T1@", b"@T1@a%2Fb"), 400, R_SLASHES),
        ("empty-segment", closing().replace(b"@T1@", b"@T1@//x"), 400, R_SLASHES),
        ("backslash", closing().replace(b"@T1@", b"@T1@a\\b"), 400, R_BACKSLASH),
        ("backslash-encoded", closing().replace(b"@T1@", b"@T1@a%5cb"), 400, R_BACKSLASH),
        ("double-encoded-dot", closing().replace(b"@T1@", b"@T1@/%252e%252e/x"), 400, R_DOUBLE),
        ("double-encoded-slash", closing().replace(b"@T1@", b"@T1@a%252fb"), 400, R_DOUBLE),
        (
            "long-8k",
            head_of(_big_target("target-long-8k", 8000), b"Connection: close"),
            200,
            "a long target under 16 KiB",
        ),
        ("long-16385", head_of(_big_target("target-long-16385", 16385)), 414, R_414),
        ("long-20000", head_of(_big_target("target-long-20000", 20000)), 414, R_414),
    ],
)

VERSION_CASES = _group(
    "version",
    [
        ("http10", b"GET @T1@ HTTP/1.0\r\n@H@\r\n", 200, R_HTTP10, SPLIT),
        (
            "http10-keep-alive-pipelined",
            b"GET @T1@ HTTP/1.0\r\n@H@Connection: keep-alive\r\n\r\n" + get(n=2),
            200,
            R_HTTP10,
        ),
        ("http20", head_of(b"GET @T1@ HTTP/2.0"), 505, R_505, SPLIT),
        ("http12", head_of(b"GET @T1@ HTTP/1.2"), 505, R_505),
        ("http09", head_of(b"GET @T1@ HTTP/0.9"), 505, R_505),
        ("http30", head_of(b"GET @T1@ HTTP/3.0"), 505, R_505),
        ("http99", head_of(b"GET @T1@ HTTP/9.9"), 505, R_505),
        ("http11x", head_of(b"GET @T1@ HTTP/1.1x"), 400, R_VERSION),
        ("lowercase", head_of(b"GET @T1@ http/1.1"), 400, R_VERSION),
        ("no-dot", head_of(b"GET @T1@ HTTP/11"), 400, R_VERSION),
        ("letter-minor", head_of(b"GET @T1@ HTTP/1.x"), 400, R_VERSION),
        ("two-digit-minor", head_of(b"GET @T1@ HTTP/1.10"), 400, R_VERSION),
        ("two-digit-major", head_of(b"GET @T1@ HTTP/01.1"), 400, R_VERSION),
        ("no-minor", head_of(b"GET @T1@ HTTP/1."), 400, R_VERSION),
        ("comma", head_of(b"GET @T1@ HTTP/1,1"), 400, R_VERSION),
        ("https", head_of(b"GET @T1@ HTTPS/1.1"), 400, R_VERSION),
        ("rtsp", head_of(b"GET @T1@ RTSP/1.0"), 400, R_VERSION),
    ],
)

HEADER_CASES = _group(
    "header",
    [
        ("no-space", closing(b"X-A:b"), 200, R_OWS),
        ("empty-value", closing(b"X-Empty:"), 200, "an empty field value is allowed"),
        ("ows", closing(b"X-A: \t b \t "), 200, R_OWS),
        ("htab-inside", closing(b"X-A: a\tb"), 200, "HTAB is allowed inside a value"),
        (
            "obs-text",
            closing(b"X-Obs: caf\xc3\xa9"),
            200,
            R_OBS_TEXT,
            {"forwarded_header": ("X-Obs", "caf\u00c3\u00a9"), "split": True},
        ),
        ("obs-text-ff", closing(b"X-Obs: \x80\xff"), 200, R_OBS_TEXT),
        ("space-before-colon", closing(b"X-A : b"), 400, R_NAME, SPLIT),
        ("tab-before-colon", closing(b"X-A\t: b"), 400, R_NAME),
        ("no-colon", closing(b"Foo"), 400, R_NAME),
        ("empty-name", closing(b": b"), 400, R_NAME),
        ("space-in-name", closing(b"X A: b"), 400, R_NAME),
        ("at-in-name", closing(b"X@A: b"), 400, R_NAME),
        ("slash-in-name", closing(b"X/A: b"), 400, R_NAME),
        ("high-in-name", closing(b"X\xe9: b"), 400, R_NAME),
        ("nul-in-name", closing(b"X\x00A: b"), 400, R_NAME),
        ("value-nul", closing(b"X-A: a\x00b"), 400, R_VALUE, SPLIT),
        ("value-soh", closing(b"X-A: a\x01b"), 400, R_VALUE),
        ("value-backspace", closing(b"X-A: a\x08b"), 400, R_VALUE),
        ("value-vt", closing(b"X-A: a\x0bb"), 400, R_VALUE),
        ("value-ff", closing(b"X-A: a\x0cb"), 400, R_VALUE),
        ("value-esc", closing(b"X-A: \x1b[31mred"), 400, R_VALUE),
        ("value-us", closing(b"X-A: a\x1fb"), 400, R_VALUE),
        ("value-del", closing(b"X-A: a\x7fb"), 400, R_VALUE),
        ("value-bare-cr", closing(b"X-A: a\rb"), 400, R_BARE, SPLIT),
        ("value-bare-lf", closing(b"X-A: a\nb"), 400, R_BARE),
        ("line-bare-lf", get().replace(b"@H@", b"@H@X-A: b\n"), 400, R_BARE),
        ("head-end-bare-lf", LINE + b"@H@\n", 400, R_BARE, SPLIT),
        ("head-end-bare-cr", LINE + b"@H@\r\r\n", 400, R_BARE),
        ("fold-space", closing(b"X-A: a\r\n b"), 400, R_FOLD, SPLIT),
        ("fold-tab", closing(b"X-A: a\r\n\tb"), 400, R_FOLD),
        ("fold-first-line", b"GET @T1@ HTTP/1.1\r\n X-A: b\r\n@H@\r\n", 400, R_FOLD),
        (
            "underscore-custom",
            closing(b"X_Custom: 1"),
            200,
            "other names with underscores are forwarded",
            {"forwarded_header": ("X_Custom", "1")},
        ),
        ("underscore-content-length", get(b"Content_Length: 5"), 400, R_UNDERSCORE, SPLIT),
        ("underscore-content-length-lower", get(b"content_length: 0"), 400, R_UNDERSCORE),
        ("underscore-transfer-encoding", get(b"Transfer_Encoding: chunked"), 400, R_UNDERSCORE),
        ("underscore-x-forwarded-for", get(b"X_Forwarded_For: 10.0.0.1"), 400, R_UNDERSCORE),
        ("underscore-x-forwarded-for-mixed", get(b"X-Forwarded_For: 10.0.0.1"), 400, R_UNDERSCORE),
        ("underscore-x-front-end-server", get(b"X_Front_End_Server: fe"), 400, R_UNDERSCORE),
        ("underscore-front-end-https", get(b"Front_End_Https: On"), 400, R_UNDERSCORE),
        ("count-100", closing(*[b"X-N%d: v" % i for i in range(98)]), 200, R_431_COUNT),
        ("count-101", get(*[b"X-N%d: v" % i for i in range(100)]), 431, R_431_COUNT),
        ("line-20k", get(b"X-Big: " + b"a" * 20000), 431, R_431_LINE),
        ("head-70k", get(*[b"X-Big%d: " % i + b"a" * 14000 for i in range(5)]), 431, R_431_HEAD),
    ],
)

HOST_CASES = _group(
    "host",
    [
        ("missing", b"GET @T1@ HTTP/1.1\r\n\r\n", 400, R_HOST_ONE, SPLIT),
        ("missing-http10", b"GET @T1@ HTTP/1.0\r\n\r\n", 400, R_HOST_ONE),
        ("repeated", get(b"Host: other.example.com"), 400, R_HOST_ONE),
        ("repeated-same", get(b"Host: mail.example.com"), 400, R_HOST_ONE),
        ("repeated-case", get(b"HOST: mail.example.com"), 400, R_HOST_ONE),
        ("empty", b"GET @T1@ HTTP/1.1\r\nHost:\r\n\r\n", 400, R_HOST_SYNTAX),
        ("space-path", b"GET @T1@ HTTP/1.1\r\nHost: a b/../\r\n\r\n", 400, R_HOST_SYNTAX, SPLIT),
        ("slash", b"GET @T1@ HTTP/1.1\r\nHost: a/b\r\n\r\n", 400, R_HOST_SYNTAX),
        ("two-ports", b"GET @T1@ HTTP/1.1\r\nHost: x:80:80\r\n\r\n", 400, R_HOST_SYNTAX),
        ("at", b"GET @T1@ HTTP/1.1\r\nHost: @x\r\n\r\n", 400, R_HOST_SYNTAX),
        ("userinfo", b"GET @T1@ HTTP/1.1\r\nHost: user@x\r\n\r\n", 400, R_HOST_SYNTAX),
        ("port-letters", b"GET @T1@ HTTP/1.1\r\nHost: x:8a\r\n\r\n", 400, R_HOST_SYNTAX),
        ("ipv6-unclosed", b"GET @T1@ HTTP/1.1\r\nHost: [::1\r\n\r\n", 400, R_HOST_SYNTAX),
        ("tab-inside", b"GET @T1@ HTTP/1.1\r\nHost: a\tb\r\n\r\n", 400, R_HOST_SYNTAX),
        (
            "high-bytes",
            b"GET @T1@ HTTP/1.1\r\nHost: caf\xc3\xa9.example\r\n\r\n",
            400,
            R_HOST_SYNTAX,
        ),
        ("question", b"GET @T1@ HTTP/1.1\r\nHost: x?y\r\n\r\n", 400, R_HOST_SYNTAX),
        ("hash", b"GET @T1@ HTTP/1.1\r\nHost: x#y\r\n\r\n", 400, R_HOST_SYNTAX),
        ("backslash", b"GET @T1@ HTTP/1.1\r\nHost: x\\y\r\n\r\n", 400, R_HOST_SYNTAX),
        ("port", closing().replace(b"@H@", b"Host: mail.example.com:8000\r\n"), 200, R_HOST_SYNTAX),
        ("ipv4", closing().replace(b"@H@", b"Host: 127.0.0.1:80\r\n"), 200, R_HOST_SYNTAX),
        ("ipv6", closing().replace(b"@H@", b"Host: [::1]:8080\r\n"), 200, R_HOST_SYNTAX),
        ("pct-encoded", closing().replace(b"@H@", b"Host: ex%41mple.com\r\n"), 200, R_HOST_SYNTAX),
        ("sub-delims", closing().replace(b"@H@", b"Host: a,b;c=d\r\n"), 200, R_HOST_SYNTAX),
        (
            "underscore",
            closing().replace(b"@H@", b"Host: mail_1.example.com\r\n"),
            200,
            R_HOST_SYNTAX,
        ),
        ("trailing-ows", closing().replace(b"@H@", b"Host: mail.example.com \t\r\n"), 200, R_OWS),
    ],
)

CL_CASES = _group(
    "cl",
    [
        ("ok", post(b"abcde", b"Connection: close"), 200, R_CL, SPLIT),
        ("zero", post(b"", b"Connection: close"), 200, R_CL),
        ("leading-zero", with_cl(b"Content-Length: 05\r\nConnection: close"), 200, R_CL),
        ("trailing-space", with_cl(b"Content-Length: 5 \r\nConnection: close"), 200, R_OWS),
        ("leading-tab", with_cl(b"Content-Length:\t5\r\nConnection: close"), 200, R_OWS),
        ("get-with-body", get(b"Content-Length: 3", b"Connection: close") + b"abc", 200, R_CL),
        ("plus", with_cl(b"Content-Length: +5"), 400, R_CL, SPLIT),
        ("minus", with_cl(b"Content-Length: -1"), 400, R_CL),
        ("hex", with_cl(b"Content-Length: 0x5"), 400, R_CL),
        ("space-inside", with_cl(b"Content-Length: 5 5"), 400, R_CL),
        ("comma", with_cl(b"Content-Length: 5,5"), 400, R_CL),
        ("comma-space", with_cl(b"Content-Length: 5, 5"), 400, R_CL),
        ("repeated-equal", with_cl(b"Content-Length: 5\r\nContent-Length: 5"), 400, R_CL, SPLIT),
        ("repeated-different", with_cl(b"Content-Length: 5\r\nContent-Length: 6"), 400, R_CL),
        ("empty", with_cl(b"Content-Length:"), 400, R_CL),
        ("quoted", with_cl(b'Content-Length: "5"'), 400, R_CL),
        ("decimal-point", with_cl(b"Content-Length: 5.0"), 400, R_CL),
        ("semicolon", with_cl(b"Content-Length: 5;"), 400, R_CL),
        ("fullwidth-digit", with_cl(b"Content-Length: \xef\xbc\x95"), 400, R_CL),
        ("vt-before", with_cl(b"Content-Length:\x0b5"), 400, R_VALUE),
        ("ff-after", with_cl(b"Content-Length: 5\x0c"), 400, R_VALUE),
        ("nul-after", with_cl(b"Content-Length: 5\x00"), 400, R_VALUE),
        ("space-before-colon", with_cl(b"Content-Length : 5"), 400, R_NAME),
        ("folded", with_cl(b"Content-Length:\r\n 5"), 400, R_FOLD),
        (
            "twenty-digits",
            with_cl(b"Content-Length: 99999999999999999999"),
            400,
            R_CL + " (llhttp: Content-Length overflow)",
        ),
        ("over-limit", with_cl(b"Content-Length: %d" % (MAX_BODY_SIZE + 1), b""), 413, R_413),
        (
            "body-short",
            with_cl(b"Content-Length: 10", b"abc"),
            408,
            R_408,
            BODY,
        ),
    ],
)

TE_CASES = _group(
    "te",
    [
        ("ok", chunked(ABC, b"Connection: close"), 200, R_TE, SPLIT),
        ("uppercase", with_te(b"Transfer-Encoding: CHUNKED", b"Connection: close"), 200, R_TE),
        ("name-case", with_te(b"transfer-ENCODING: Chunked", b"Connection: close"), 200, R_TE),
        ("tab", with_te(b"Transfer-Encoding:\tchunked", b"Connection: close"), 200, R_OWS, SPLIT),
        ("no-space", with_te(b"Transfer-Encoding:chunked", b"Connection: close"), 200, R_OWS),
        (
            "trailing-spaces",
            with_te(b"Transfer-Encoding: chunked  ", b"Connection: close"),
            200,
            R_OWS,
        ),
        (
            "trailing-tab",
            with_te(b"Transfer-Encoding: chunked\t"),
            400,
            "llhttp refuses HTAB after chunked, so feproxy does (the differential rule)",
        ),
        ("space-before-colon", with_te(b"Transfer-Encoding : chunked"), 400, R_NAME, SPLIT),
        ("tab-before-colon", with_te(b"Transfer-Encoding\t: chunked"), 400, R_NAME),
        ("xchunked", with_te(b"Transfer-Encoding: xchunked"), 400, R_TE, SPLIT),
        ("chunk", with_te(b"Transfer-Encoding: chunk"), 400, R_TE),
        ("chunked-identity", with_te(b"Transfer-Encoding: chunked, identity"), 400, R_TE),
        ("identity-chunked", with_te(b"Transfer-Encoding: identity, chunked"), 400, R_TE),
        ("gzip-chunked", with_te(b"Transfer-Encoding: gzip, chunked"), 400, R_TE),
        ("chunked-chunked", with_te(b"Transfer-Encoding: chunked, chunked"), 400, R_TE),
        ("identity", with_te(b"Transfer-Encoding: identity", body=b""), 400, R_TE),
        ("leading-comma", with_te(b"Transfer-Encoding: ,chunked"), 400, R_TE),
        ("trailing-comma", with_te(b"Transfer-Encoding: chunked,"), 400, R_TE),
        ("quoted", with_te(b'Transfer-Encoding: "chunked"'), 400, R_TE),
        ("junk-after", with_te(b"Transfer-Encoding: chunked x"), 400, R_TE),
        ("parameter", with_te(b"Transfer-Encoding: chunked;q=1"), 400, R_TE),
        ("empty", with_te(b"Transfer-Encoding:", body=b""), 400, R_TE),
        (
            "repeated",
            with_te(b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked"),
            400,
            R_TE,
        ),
        (
            "repeated-gzip",
            with_te(b"Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked"),
            400,
            R_TE,
        ),
        (
            "repeated-identity",
            with_te(b"Transfer-Encoding: chunked\r\nTransfer-encoding: identity"),
            400,
            R_TE,
        ),
        ("vt-before-value", with_te(b"Transfer-Encoding: \x0bchunked"), 400, R_VALUE, SPLIT),
        ("ff-after-value", with_te(b"Transfer-Encoding: chunked\x0c"), 400, R_VALUE),
        ("nul-after-value", with_te(b"Transfer-Encoding: chunked\x00"), 400, R_VALUE),
        ("vt-before-name", with_te(b"\x0bTransfer-Encoding: chunked"), 400, R_NAME),
        ("nul-in-name", with_te(b"Transfer-Encoding\x00: chunked"), 400, R_NAME),
        ("folded-value", with_te(b"Transfer-Encoding:\r\n chunked"), 400, R_FOLD),
        ("folded-after", with_te(b"X-A: b\r\n Transfer-Encoding: chunked"), 400, R_FOLD),
        (
            "first-line-folded",
            b"POST @T1@ HTTP/1.1\r\n Transfer-Encoding: chunked\r\n@H@\r\n" + ABC,
            400,
            R_FOLD,
        ),
        (
            "http10",
            b"POST @T1@ HTTP/1.0\r\n@H@Transfer-Encoding: chunked\r\n\r\n" + ABC,
            400,
            R_TE_10,
        ),
    ],
)

SMUGGLE_CASES = _group(
    "smuggle",
    [
        (
            "cl-te",
            with_cl(b"Content-Length: 6\r\nTransfer-Encoding: chunked", b"0\r\n\r\nG"),
            400,
            R_CL_TE,
            SPLIT,
        ),
        (
            "te-cl",
            with_te(
                b"Transfer-Encoding: chunked\r\nContent-Length: 3",
                body=b"8\r\nSMUGGLED\r\n0\r\n\r\n",
            ),
            400,
            R_CL_TE,
            SPLIT,
        ),
        ("cl0-te", with_cl(b"Content-Length: 0\r\nTransfer-Encoding: chunked", ABC), 400, R_CL_TE),
        (
            "cl-te-space-colon",
            with_cl(b"Content-Length: 4\r\nTransfer-Encoding : chunked", ABC),
            400,
            R_NAME,
        ),
        (
            "cl-te-tab",
            with_cl(b"Content-Length: 4\r\nTransfer-Encoding:\tchunked", ABC),
            400,
            R_CL_TE,
        ),
        (
            "cl-te-xchunked",
            with_cl(b"Content-Length: 4\r\nTransfer-Encoding: xchunked", ABC),
            400,
            R_CL_TE,
        ),
        (
            "cl-te-identity",
            with_cl(b"Content-Length: 5\r\nTransfer-Encoding: identity"),
            400,
            R_CL_TE,
        ),
        (
            "cl-te-underscore",
            with_cl(b"Content-Length: 4\r\nTransfer_Encoding: chunked", ABC),
            400,
            R_UNDERSCORE,
        ),
        (
            "te-cl-underscore",
            with_te(b"Transfer-Encoding: chunked\r\nContent_Length: 3"),
            400,
            R_UNDERSCORE,
        ),
        (
            "cl-body-holds-request",
            post(inner_request("smuggle-cl-body-holds-request", 2), b"Connection: close"),
            200,
            "a body is data: the request inside it is not a request",
            SPLIT,
        ),
        (
            "chunked-body-holds-request",
            chunked(
                _chunk(inner_request("smuggle-chunked-body-holds-request", 2)), b"Connection: close"
            ),
            200,
            "a body is data: the request inside it is not a request",
        ),
        (
            "pipelined-cl-te",
            get(n=1)
            + with_cl(b"Content-Length: 6\r\nTransfer-Encoding: chunked", b"0\r\n\r\nG").replace(
                b"@T1@", b"@T2@"
            ),
            (200, 400),
            R_CL_TE,
        ),
    ],
)

CHUNK_CASES = _group(
    "chunk",
    [
        (
            "multi",
            chunked(b"3\r\nabc\r\n4\r\ndefg\r\n0\r\n\r\n", b"Connection: close"),
            200,
            R_CHUNK_SIZE,
            SPLIT,
        ),
        (
            "upper-hex",
            chunked(b"A\r\n0123456789\r\n0\r\n\r\n", b"Connection: close"),
            200,
            R_CHUNK_SIZE,
        ),
        (
            "leading-zeros",
            chunked(b"0003\r\nabc\r\n0\r\n\r\n", b"Connection: close"),
            200,
            R_CHUNK_SIZE,
        ),
        (
            "ext-token",
            chunked(b"3;a=b\r\nabc\r\n0\r\n\r\n", b"Connection: close"),
            200,
            R_CHUNK_EXT,
            SPLIT,
        ),
        (
            "ext-name-only",
            chunked(b"3;a\r\nabc\r\n0\r\n\r\n", b"Connection: close"),
            200,
            R_CHUNK_EXT,
        ),
        (
            "ext-quoted",
            chunked(b'3;a="b c"\r\nabc\r\n0\r\n\r\n', b"Connection: close"),
            200,
            R_CHUNK_EXT,
        ),
        (
            "ext-quoted-escape",
            chunked(b'3;a="b\\"c"\r\nabc\r\n0\r\n\r\n', b"Connection: close"),
            200,
            R_CHUNK_EXT,
        ),
        (
            "ext-several",
            chunked(b"3;a=b;c=d\r\nabc\r\n0;z\r\n\r\n", b"Connection: close"),
            200,
            R_CHUNK_EXT,
        ),
        ("size-leading-space", chunked(b" 3\r\nabc\r\n0\r\n\r\n"), 400, R_CHUNK_SIZE, BODY_SPLIT),
        ("size-trailing-space", chunked(b"3 \r\nabc\r\n0\r\n\r\n"), 400, R_CHUNK_SIZE, BODY_SPLIT),
        ("size-trailing-tab", chunked(b"3\t\r\nabc\r\n0\r\n\r\n"), 400, R_CHUNK_SIZE, BODY),
        ("size-minus", chunked(b"-3\r\nabc\r\n0\r\n\r\n"), 400, R_CHUNK_SIZE, BODY),
        ("size-0x", chunked(b"0x3\r\nabc\r\n0\r\n\r\n"), 400, R_CHUNK_SIZE, BODY),
        ("size-not-hex", chunked(b"g\r\nabc\r\n0\r\n\r\n"), 400, R_CHUNK_SIZE, BODY),
        ("size-empty", chunked(b"\r\nabc\r\n0\r\n\r\n"), 400, R_CHUNK_SIZE, BODY),
        (
            "size-over-2-63",
            chunked(b"8000000000000001\r\nabc"),
            408,
            R_CHUNK_HUGE,
            BODY,
        ),
        ("size-2-64", chunked(b"10000000000000000\r\nabc\r\n0\r\n\r\n"), 400, R_CHUNK_SIZE, BODY),
        ("ext-empty", chunked(b"3;\r\nabc\r\n0\r\n\r\n"), 400, R_CHUNK_EXT, BODY_SPLIT),
        ("ext-nul", chunked(b"3;a\x00b\r\nabc\r\n0\r\n\r\n"), 400, R_CHUNK_EXT, BODY),
        ("ext-unterminated", chunked(b'3;a="b\r\nabc\r\n0\r\n\r\n'), 400, R_CHUNK_EXT, BODY),
        (
            "ext-empty-value",
            chunked(b"3;a=\r\nabc\r\n0\r\n\r\n", b"Connection: close"),
            200,
            R_CHUNK_EXT_LLHTTP,
        ),
        (
            "ext-empty-name",
            chunked(b"3;=b\r\nabc\r\n0\r\n\r\n", b"Connection: close"),
            200,
            R_CHUNK_EXT_LLHTTP,
        ),
        (
            "ext-space-after-semicolon",
            chunked(b"3; a=b\r\nabc\r\n0\r\n\r\n"),
            400,
            R_CHUNK_EXT,
            BODY,
        ),
        (
            "ext-space-before-semicolon",
            chunked(b"3 ;a=b\r\nabc\r\n0\r\n\r\n"),
            400,
            R_CHUNK_EXT,
            BODY,
        ),
        ("ext-space-in-value", chunked(b"3;a=b c\r\nabc\r\n0\r\n\r\n"), 400, R_CHUNK_EXT, BODY),
        ("ext-high-byte", chunked(b"3;a=\x80\r\nabc\r\n0\r\n\r\n"), 400, R_CHUNK_EXT, BODY),
        ("size-bare-lf", chunked(b"3\nabc\r\n0\r\n\r\n"), 400, R_CHUNK_CRLF, BODY_SPLIT),
        ("size-bare-cr", chunked(b"3\rabc\r\n0\r\n\r\n"), 400, R_CHUNK_CRLF, BODY),
        ("data-bare-lf", chunked(b"3\r\nabc\n0\r\n\r\n"), 400, R_CHUNK_CRLF, BODY_SPLIT),
        ("data-no-crlf", chunked(b"3\r\nabc0\r\n\r\n"), 400, R_CHUNK_CRLF, BODY),
        ("data-too-long", chunked(b"3\r\nabcd\r\n0\r\n\r\n"), 400, R_CHUNK_CRLF, BODY),
        ("data-too-short", chunked(b"3\r\nab\r\n0\r\n\r\n"), 400, R_CHUNK_CRLF, BODY),
        ("last-size-bare-lf", chunked(b"3\r\nabc\r\n0\n\r\n"), 400, R_CHUNK_CRLF, BODY),
        ("end-bare-lf", chunked(b"3\r\nabc\r\n0\r\n\n"), 400, R_CHUNK_CRLF, BODY_SPLIT),
        (
            "over-limit",
            chunked(b"%x\r\n%s\r\n" % (1 << 16, b"b" * (1 << 16)) * 17 + b"0\r\n\r\n"),
            413,
            R_413 + " (counted while chunked)",
            BODY,
        ),
        (
            "over-limit-one-chunk",
            chunked(b"%x\r\n%s\r\n0\r\n\r\n" % (MAX_BODY_SIZE + 1, b"c" * (MAX_BODY_SIZE + 1))),
            413,
            R_413 + " (counted while chunked)",
            BODY,
        ),
    ],
)

TRAILER_CASES = _group(
    "trailer",
    [
        (
            "ok",
            chunked(b"3\r\nabc\r\n0\r\nX-T: y\r\n\r\n", b"Connection: close"),
            200,
            R_TRAILER,
            SPLIT,
        ),
        (
            "several",
            chunked(b"3\r\nabc\r\n0\r\nX-T: y\r\nX-U:\r\n\r\n", b"Connection: close"),
            200,
            R_TRAILER,
        ),
        ("bad-name", chunked(b"3\r\nabc\r\n0\r\nBad Name: x\r\n\r\n"), 400, R_TRAILER, BODY_SPLIT),
        ("no-colon", chunked(b"3\r\nabc\r\n0\r\nfoo\r\n\r\n"), 400, R_TRAILER, BODY),
        (
            "request-line",
            chunked(b"3\r\nabc\r\n0\r\n" + get(n=2)),
            400,
            R_TRAILER + " (a request line is not one)",
            BODY,
        ),
        ("nul", chunked(b"3\r\nabc\r\n0\r\nX-T: a\x00b\r\n\r\n"), 400, R_TRAILER, BODY),
        ("space-before-colon", chunked(b"3\r\nabc\r\n0\r\nX-T : y\r\n\r\n"), 400, R_TRAILER, BODY),
        ("folded", chunked(b"3\r\nabc\r\n0\r\nX-T: a\r\n b\r\n\r\n"), 400, R_TRAILER, BODY),
        ("bare-lf", chunked(b"3\r\nabc\r\n0\r\nX-T: a\n\r\n"), 400, R_TRAILER, BODY),
    ],
)

EXPECT_CASES = _group(
    "expect",
    [
        (
            "100-continue",
            post(b"abcde", b"Expect: 100-continue", b"Connection: close"),
            200,
            R_EXPECT,
            SPLIT,
        ),
        (
            "100-continue-case",
            post(b"abcde", b"Expect: 100-Continue", b"Connection: close"),
            200,
            R_EXPECT,
        ),
        ("100-continue-no-body", closing(b"Expect: 100-continue"), 200, R_EXPECT),
        ("other", get(b"Expect: foo"), 417, R_EXPECT, SPLIT),
        ("102-processing", get(b"Expect: 102-processing"), 417, R_EXPECT),
        ("list", post(b"abcde", b"Expect: 100-continue, foo"), 417, R_EXPECT),
        ("with-parameter", post(b"abcde", b"Expect: 100-continue; a=b"), 417, R_EXPECT),
    ],
)

CONNECTION_CASES = _group(
    "connection",
    [
        ("close", closing(), 200, R_CLOSE, SPLIT),
        ("close-upper", get(b"Connection: CLOSE"), 200, R_CLOSE),
        ("keep-alive", get(b"Connection: keep-alive"), 200, "keep-alive is the HTTP/1.1 default"),
        (
            "custom",
            get(b"Connection: x-custom, close", b"X-Custom: 1"),
            200,
            "headers named in Connection are dropped before forwarding",
            {"dropped_header": "X-Custom"},
        ),
        (
            "te",
            get(b"Connection: te, close", b"TE: trailers"),
            200,
            "headers named in Connection are dropped before forwarding",
            {"dropped_header": "TE"},
        ),
        (
            "upgrade-token",
            get(b"Connection: upgrade, close"),
            200,
            "other Connection tokens are fine",
        ),
        ("host", get(b"Connection: host"), 400, R_CONNECTION, SPLIT),
        ("host-upper", get(b"Connection: close, HOST"), 400, R_CONNECTION),
        (
            "authorization",
            get(b"Connection: Authorization", b"Authorization: Basic eDp5"),
            400,
            R_CONNECTION,
        ),
        (
            "content-length",
            with_cl(b"Content-Length: 5\r\nConnection: content-length"),
            400,
            R_CONNECTION,
        ),
        (
            "transfer-encoding",
            with_te(b"Transfer-Encoding: chunked\r\nConnection: transfer-encoding"),
            400,
            R_CONNECTION,
        ),
        ("x-forwarded-for", get(b"Connection: X-Forwarded-For"), 400, R_CONNECTION),
        ("x-front-end-server", get(b"Connection: x-front-end-server"), 400, R_CONNECTION),
        ("front-end-https", get(b"Connection: Front-End-Https"), 400, R_CONNECTION),
        ("second-header", get(b"Connection: close", b"Connection: host"), 400, R_CONNECTION),
    ],
)

UPGRADE_CASES = _group(
    "upgrade",
    [
        (
            "h2c",
            get(
                b"Connection: Upgrade, HTTP2-Settings",
                b"Upgrade: h2c",
                b"HTTP2-Settings: AAMAAABkAAQAAP__",
            ),
            200,
            "an upgrade is ignored: served as a plain request (200, not 101)",
            SPLIT,
        ),
        (
            "websocket",
            get(
                b"Connection: Upgrade",
                b"Upgrade: websocket",
                b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
                b"Sec-WebSocket-Version: 13",
            ),
            200,
            "an upgrade is ignored: served as a plain request (200, not 101)",
        ),
        (
            "h2c-then-request",
            get(b"Connection: Upgrade, HTTP2-Settings", b"Upgrade: h2c", b"HTTP2-Settings: AAMA")
            + get(n=2),
            (200, 200),
            "after an ignored upgrade the connection still carries HTTP/1.1",
        ),
    ],
)

PIPELINE_CASES = _group(
    "pipeline",
    [
        ("two", get() + get(n=2), (200, 200), R_PIPELINE, SPLIT),
        ("three", get() + get(n=2) + closing(n=3), (200, 200, 200), R_PIPELINE),
        (
            "post-then-get",
            post(b"abc") + get(n=2),
            (200, 200),
            R_PIPELINE,
            {"split": True, "methods": (b"POST", b"GET")},
        ),
        ("chunked-then-get", chunked(ABC) + get(n=2), (200, 200), R_PIPELINE, SPLIT),
        ("empty-line-between", get() + b"\r\n" + get(n=2), (200, 200), R_EMPTY_LINES),
        ("then-bare-lf", get() + b"GET @T2@ HTTP/1.1\n@H@\r\n", (200, 400), R_BARE),
        ("then-505", get() + head_of(b"GET @T2@ HTTP/2.0"), (200, 505), R_505),
        (
            "then-413",
            get()
            + with_cl(b"Content-Length: %d" % (MAX_BODY_SIZE + 1), b"").replace(b"@T1@", b"@T2@"),
            (200, 413),
            R_413,
        ),
        ("then-underscore", get() + get(b"Content_Length: 5", n=2), (200, 400), R_UNDERSCORE),
        ("bad-then-good", b"GET @T1@ HTTP/1.1\n@H@\r\n" + get(n=2), 400, R_AFTER_REFUSAL, SPLIT),
        ("505-then-good", head_of(b"GET @T1@ HTTP/2.0") + get(n=2), 505, R_AFTER_REFUSAL),
        ("close-then-more", closing() + get(n=2), 200, R_CLOSE, SPLIT),
        ("http10-then-more", b"GET @T1@ HTTP/1.0\r\n@H@\r\n" + get(n=2), 200, R_HTTP10),
        ("trailing-crlf", get() + b"\r\n", 200, "an empty line after a request is ignored", SPLIT),
        ("trailing-lf", get() + b"\n", 200, "an empty line after a request is ignored"),
    ],
)

CASES: tuple[WireCase, ...] = tuple(
    LINE_CASES
    + METHOD_CASES
    + TARGET_CASES
    + VERSION_CASES
    + HEADER_CASES
    + HOST_CASES
    + CL_CASES
    + TE_CASES
    + SMUGGLE_CASES
    + CHUNK_CASES
    + TRAILER_CASES
    + EXPECT_CASES
    + CONNECTION_CASES
    + UPGRADE_CASES
    + PIPELINE_CASES
)


# The table


def _rows(
    cases: Sequence[WireCase], answers: Callable[[WireCase], str] | None
) -> list[tuple[str, str, str, str, str]]:
    rows = []
    for case in cases:
        answer = answers(case) if answers is not None else "-"
        rows.append((case.id, case.expected_text, answer, differential(case).summary(), case.rule))
    return rows


_HEADINGS = ("case", "expected", "feproxy", "llhttp alone", "rule")


def format_table(
    cases: Sequence[WireCase], answers: Callable[[WireCase], str] | None = None
) -> str:
    """The table in fixed-width columns (the last, the rule, is not padded)."""
    rows = [_HEADINGS, *_rows(cases, answers)]
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = []
    for r in rows:
        cells = [r[i].ljust(widths[i]) for i in range(4)]
        lines.append("  ".join([*cells, r[4]]).rstrip())
        if r is rows[0]:
            lines.append("  ".join("-" * w for w in [*widths, len(r[4])]))
    return "\n".join(lines) + "\n"


def markdown_table(
    cases: Sequence[WireCase], answers: Callable[[WireCase], str] | None = None
) -> str:
    """The table as GitHub-flavoured Markdown."""

    def cell(text: str) -> str:
        return text.replace("\\", "\\\\").replace("|", "\\|").replace("`", "\\`")

    lines = ["| " + " | ".join(_HEADINGS) + " |", "|" + "---|" * len(_HEADINGS)]
    for case_id, *rest in _rows(cases, answers):
        lines.append(f"| `{case_id}` | " + " | ".join(cell(t) for t in rest) + " |")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.support.wire_cases", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--table", action="store_true", help="print the table as Markdown")
    parser.add_argument(
        "--expected",
        action="store_true",
        help="do not run feproxy: print the expectations and llhttp's verdicts only",
    )
    parser.add_argument("-k", dest="match", default="", help="only cases whose id contains this")
    args = parser.parse_args(argv)
    if not args.table:
        parser.print_help()
        return 2
    cases = [c for c in CASES if args.match in c.id]
    if args.expected:
        sys.stdout.write(markdown_table(cases))
        return 0
    from tests.support.wire_client import live_answers  # noqa: PLC0415 - it imports this module

    with live_answers() as answer:
        sys.stdout.write(markdown_table(cases, answer))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
