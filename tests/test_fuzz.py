"""Property-based tests (hypothesis) of everything the front end parses itself."""

from __future__ import annotations

import base64
import posixpath
from typing import Any
from urllib.parse import quote, unquote_to_bytes

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.internet import defer
from twisted.internet.task import Clock
from twisted.python.failure import Failure

from frontend.config import VirtualDirectory, parse_config
from frontend.directory.credentials import parse_basic
from frontend.directory.lookups import Lookups
from frontend.errors import AuthenticationRequired, BadRequest, NotFound, ProxyError
from frontend.routing.decisions import (
    Target,
    mailbox_logon,
    match_vdir,
    parse_replica_servers,
    parse_target,
)
from frontend.routing.marks import UnavailableMarks
from frontend.routing.resolver import ClientRequest, Router
from frontend.wire.persistence import connection_tokens
from tests.fakes import MAILBOX_CONFIG, fake_directory

FUZZ = settings(
    max_examples=400, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)
EXCHANGE = VirtualDirectory("/exchange", "mailbox", smtp_domain="example.com")

# Bytes that matter to path parsing, mixed with anything.
PATH_BYTES = st.lists(
    st.sampled_from(
        [
            b"/",
            b".",
            b"..",
            b"%",
            b"%2e",
            b"%2E",
            b"%2f",
            b"%5c",
            b"%00",
            b"\\",
            b";",
            b"?",
            b"#",
            b"@",
            b"a",
            b"bob",
            b"%C3%A9",
            b"\xc3\xa9",
            b" ",
            b"%25",
            b"%252e",
            b"%252F",
            b"%255c",
        ]
    )
    | st.binary(max_size=3),
    max_size=12,
).map(b"".join)


@FUZZ
@given(raw=PATH_BYTES.map(lambda p: b"/" + p))
def test_parse_target_accepts_or_says_400_and_agrees_with_a_normalising_back_end(
    raw: bytes,
) -> None:
    """Any request-target is either refused with BadRequest or parsed into segments
    that a back end decoding and normalising the path would see too."""
    try:
        target = parse_target(raw)
    except BadRequest:
        return
    decoded = unquote_to_bytes(target.path).decode("utf-8")
    assert "\\" not in decoded
    normalised = posixpath.normpath(decoded)
    assert tuple(s for s in normalised.split("/") if s) == target.segments
    assert tuple(s for s in decoded.split("/") if s) == target.segments
    for segment in target.segments:  # nothing a second decoding could turn into a separator
        assert not any(x in segment.lower() for x in ("%2e", "%2f", "%5c"))


@FUZZ
@given(name=st.text(max_size=20), rest=st.lists(st.text(max_size=5), max_size=3))
def test_mailbox_logon_names_exactly_the_mailbox_in_the_path(name: str, rest: list[str]) -> None:
    """Explicit logon yields the address named in the first segment, or a 400."""
    try:
        logon = mailbox_logon(EXCHANGE, (name, *rest))
    except BadRequest:
        return
    assert logon.address is not None
    assert logon.address.count("@") == 1
    expected = name if "@" in name else f"{name}@example.com"
    assert logon.address == expected


@FUZZ
@given(
    header=st.binary(max_size=60)
    | st.builds(
        lambda u, p: b"Basic " + base64.b64encode(u.encode() + b":" + p.encode()),
        st.text(max_size=10),
        st.text(max_size=10),
    )
)
def test_basic_credentials_parse_or_are_refused_cleanly(header: bytes) -> None:
    """Any Authorization value gives credentials, a 401 or a 400, nothing else."""
    try:
        login, password = parse_basic(header)
    except (AuthenticationRequired, BadRequest):
        return
    assert isinstance(login, str)
    assert isinstance(password, bytes)


@FUZZ
@given(
    user=st.text(max_size=10).filter(lambda u: ":" not in u and all(ord(c) >= 32 for c in u)),
    password=st.text(max_size=10),
)
def test_basic_credentials_round_trip(user: str, password: str) -> None:
    """What a client encodes is what the front end reads: the password as its octets."""
    header = b"Basic " + base64.b64encode(f"{user}:{password}".encode())
    assert parse_basic(header) == (user, password.encode())


@FUZZ
@given(
    before=st.text(max_size=4).filter(lambda u: ":" not in u),
    control=st.characters(max_codepoint=0x1F),
)
def test_user_name_with_control_characters_is_400(before: str, control: str) -> None:
    """A control character in a Basic user name is refused before any lookup."""
    header = b"Basic " + base64.b64encode(f"{before}{control}x:pw".encode())
    try:
        parse_basic(header)
    except BadRequest:
        return
    raise AssertionError(f"accepted {before + control!r}")


@FUZZ
@given(values=st.lists(st.binary(max_size=40), max_size=3))
def test_referral_lists_hold_only_host_names(values: list[bytes]) -> None:
    """Whatever a back end puts in X-Replica-Servers, only host-name-like entries survive."""
    for name in parse_replica_servers(values):
        assert name
        assert all(c.isalnum() or c in "-._" for c in name)


@FUZZ
@given(values=st.lists(st.binary(max_size=40), max_size=3))
def test_connection_header_tokens_never_crash(values: list[bytes]) -> None:
    """Connection header values of any shape give a set of lowercase tokens."""
    tokens = connection_tokens(values)
    assert all(t == t.lower() and t.strip() == t for t in tokens)


def _router() -> Router:
    config = parse_config(
        {**MAILBOX_CONFIG, "frontend": {**MAILBOX_CONFIG["frontend"], "authenticate": False}}
    )
    clock = Clock()
    lookups = Lookups(fake_directory(), clock, ttl=600, maxsize=100)
    return Router(config, UnavailableMarks(clock, 600), lookups=lookups)


MAILBOXES = {"alice": "ex1.example.com", "bob": "ex2.example.com", "carol": "ex1.example.com"}


@FUZZ
@given(
    first=st.sampled_from(
        [
            "alice",
            "bob",
            "ALICE",
            "b%6Fb",
            "a.archer@example.com",
            "x",
            "%2e%2e",
            "..",
            "bob%2f..",
            "bob%00",
            "bob@",
            "@x",
            "*",
            "bob)(",
        ]
    )
    | st.text(max_size=8).map(lambda t: quote(t, safe="")),
    tail=PATH_BYTES,
)
def test_mailbox_urls_route_only_to_the_server_of_the_mailbox_they_name(
    first: str, tail: bytes
) -> None:
    """A routed mailbox URL goes to the server of the mailbox its first segment
    names (as the back end will read it); anything else is a 4xx."""
    raw = b"/exchange/" + first.encode() + b"/" + tail.lstrip(b"/")
    result: list[Any] = []
    try:
        target = parse_target(raw)
    except BadRequest:
        return
    request = ClientRequest(
        method=b"GET", target=target, authorization=None, client_address="127.0.0.1", secure=False
    )
    defer.ensureDeferred(_router().route(request)).addBoth(result.append)
    (outcome,) = result
    if isinstance(outcome, Failure):
        assert isinstance(outcome.value, ProxyError)
        assert outcome.value.status < 500
        if not isinstance(outcome.value, NotFound | BadRequest):
            assert outcome.value.status == 403  # carol: HTTP disabled
        return
    named = target.segments[1].lower()
    owner = {"a.archer@example.com": "alice"}.get(named, named.removesuffix("@example.com"))
    assert outcome.servers == (MAILBOXES[owner],)
    assert outcome.target == raw


_VDIRS = [
    VirtualDirectory("/exchange", "mailbox", smtp_domain="example.com"),
    VirtualDirectory("/Public", "public", tree="default"),
    VirtualDirectory("/public/apps", "public", tree="Apps"),
    VirtualDirectory("/exchweb/bin/x", "static", servers=("a",)),
]


def _longest_match(target: Target) -> tuple[VirtualDirectory, tuple[str, ...]] | None:
    """The vdir rule stated plainly: longest whole-segment prefix, case-insensitive."""
    lowered = tuple(s.lower() for s in target.segments)
    found = [v for v in _VDIRS if lowered[: len(v.segments)] == v.segments]
    if not found:
        return None
    best = max(found, key=lambda v: len(v.segments))
    return best, target.segments[len(best.segments) :]


@FUZZ
@given(
    segments=st.lists(
        st.sampled_from(["exchange", "EXCHANGE", "public", "Apps", "apps", "exchweb", "bin", "x"])
        | st.from_regex(r"[A-Za-z0-9._~-]{1,4}", fullmatch=True),
        max_size=5,
    )
)
def test_vdir_match_is_the_longest_whole_segment_prefix(segments: list[str]) -> None:
    raw = ("/" + "/".join(segments)).encode()
    try:
        target = parse_target(raw)
    except BadRequest:
        return
    assert match_vdir(_VDIRS, target) == _longest_match(target)
