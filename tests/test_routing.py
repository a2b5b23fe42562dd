"""The pure routing step: request-target validation, virtual directories, logon names."""

from __future__ import annotations

import pytest

from frontend.config import VirtualDirectory
from frontend.errors import BadRequest
from frontend.routing.decisions import (
    implicit_target,
    mailbox_logon,
    match_vdir,
    parse_target,
    static_route,
)

EXCHANGE = VirtualDirectory("/exchange", "mailbox", smtp_domain="example.com")
EXCHWEB = VirtualDirectory("/exchweb", "static", servers=("ex1", "ex2"))
DEEP = VirtualDirectory("/exchweb/bin", "static", servers=("ex3",))
VDIRS = (EXCHANGE, EXCHWEB, DEEP)


def test_target_segments_are_percent_decoded() -> None:
    """Segments are decoded for routing while the raw target is kept for forwarding."""
    t = parse_target(b"/exchange/Jos%C3%A9/Inbox?Cmd=open")
    assert t.segments == ("exchange", "José", "Inbox")
    assert t.query == b"Cmd=open"
    assert t.raw == b"/exchange/Jos%C3%A9/Inbox?Cmd=open"


@pytest.mark.parametrize(
    "raw",
    [
        b"/exchange/../exchange/bob/",
        b"/exchange/%2E%2e/bob",
        b"/exchange/./bob",
        b"/exchange/a%2fb",
        b"/exchange/a%5cb",
        b"/exchange/a\\b",
        b"/exchange//bob",
        b"/exchange/%00",
        b"/exchange/%ff",
        b"http://host/exchange/",
        b"*",
        b"/exchange/..;x/bob",
        b"/exchange/%252e%252e/bob",
        b"/exchange/a%252Fb",
        b"/exchange/\xc3\xa9",
    ],
)
def test_ambiguous_targets_are_refused(raw: bytes) -> None:
    """Anything the back end could resolve differently from the router is a 400."""
    with pytest.raises(BadRequest):
        parse_target(raw)


def test_vdir_match_is_segment_wise_longest_and_case_insensitive() -> None:
    """/ExchWeb/bin/x goes to the deeper vdir; /exchwebX matches nothing."""
    assert match_vdir(VDIRS, parse_target(b"/ExchWeb/BIN/x.js")) == (DEEP, ("x.js",))
    assert match_vdir(VDIRS, parse_target(b"/exchweb/img/x.gif")) == (
        EXCHWEB,
        ("img", "x.gif"),
    )
    assert match_vdir(VDIRS, parse_target(b"/exchwebx/y")) is None
    assert match_vdir(VDIRS, parse_target(b"/")) is None


def test_static_route_puts_marked_servers_last() -> None:
    """A static server list keeps its order, reachable servers first."""
    route = static_route(EXCHWEB, parse_target(b"/exchweb/x"), unavailable={"ex1"})
    assert route.servers == ("ex2", "ex1")
    assert route.failover


def test_explicit_logon_uses_vdir_domain_or_the_given_one() -> None:
    """/exchange/bob -> bob@example.com; /exchange/bob@corp.net overrides the domain."""
    assert mailbox_logon(EXCHANGE, ("bob", "Inbox")).address == "bob@example.com"
    assert mailbox_logon(EXCHANGE, ("bob@corp.net",)).address == "bob@corp.net"
    assert mailbox_logon(EXCHANGE, ()).address is None


@pytest.mark.parametrize("name", ["@example.com", "bob@", "a@b@c"])
def test_malformed_logon_names_are_refused(name: str) -> None:
    """A mailbox name that is not an address or a local part is a 400."""
    with pytest.raises(BadRequest):
        mailbox_logon(EXCHANGE, (name,))


def test_implicit_logon_rewrites_path_with_alias() -> None:
    """/exchange/ becomes /exchange/<alias>/ keeping the client's spelling and query."""
    assert implicit_target(parse_target(b"/Exchange/"), 1, "alice") == b"/Exchange/alice/"
    assert (
        implicit_target(parse_target(b"/exchange?Cmd=x"), 1, "alice") == b"/exchange/alice/?Cmd=x"
    )
    assert implicit_target(parse_target(b"/exchange/"), 1, "jo sé") == b"/exchange/jo%20s%C3%A9/"
