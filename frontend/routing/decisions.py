"""The routing decision: pure functions over the request and directory facts.

Nothing here does I/O.  :mod:`frontend.routing.resolver` fetches the facts a decision
needs (from the directory, through caches) and calls these functions; tests
call them with plain values.

The request-target is validated before anything routes on it: a path that
could be read one way here and another way by the back end (dot-segments,
encoded slashes, empty segments, control characters) is refused, so a URL can
never be routed by one mailbox name and served as another.
"""

from __future__ import annotations

import re
from collections.abc import Container, Sequence
from typing import NamedTuple
from urllib.parse import quote, unquote_to_bytes

from frontend.config import VirtualDirectory
from frontend.directory.interfaces import UserEntry
from frontend.errors import BadRequest, Forbidden, NotFound, ReferralLoop
from frontend.routing.hashing import HashPolicy

__all__ = [
    "MailboxLogon",
    "Route",
    "Target",
    "check_mailbox_owner",
    "folder_keys",
    "implicit_target",
    "mailbox_logon",
    "mailbox_route",
    "match_vdir",
    "parse_replica_servers",
    "parse_target",
    "public_order",
    "public_route",
    "referral_candidates",
    "static_route",
    "user_token",
]


class Target(NamedTuple):
    """A validated origin-form request-target.

    (A NamedTuple: one is made per request, and a frozen dataclass costs
    several times as much to build.)
    """

    raw: bytes  # exactly as the client sent it
    path: bytes  # raw path, without the query
    query: bytes | None  # raw query without "?", None when absent
    segments: tuple[str, ...]  # percent-decoded path segments


class Route(NamedTuple):
    """Where a request goes and how failures are treated.

    ``servers`` are the candidates in preference order.  ``failover``: when a
    server cannot be reached (nothing of the request reached it), try the
    next.  ``mark``: such a server is marked unavailable.  ``referrals``: a
    421 referral from the back end is followed.
    """

    vdir: VirtualDirectory
    servers: tuple[str, ...]
    target: bytes
    failover: bool = False
    mark: bool = False
    referrals: bool = False
    token: bytes = b""
    # For a mailbox: which directory entry to look up again, bypassing the
    # cache, when its server refuses the connection (the mailbox may have
    # moved): ("user", login) or ("mailbox", address).
    owner_key: tuple[str, str] | None = None
    # For public folders: whether servers are in the user's hash order (else
    # name order, for requests without an authenticated user).
    balanced: bool = False


# Outside visible ASCII, or a backslash (which some servers read as "/").
_BAD_PATH_BYTE = re.compile(rb"[^\x21-\x7e]|\\")
_CONTROL_BYTE = re.compile(rb"[\x00-\x1f\x7f]")
_DOUBLE_ENCODED = re.compile(r"%(2e|2f|5c)", re.IGNORECASE)


def parse_target(raw: bytes) -> Target:
    """Validate a request-target; raise :class:`BadRequest` when unsafe."""
    if not raw.startswith(b"/"):
        raise BadRequest("Only origin-form request targets (/path) are accepted.")
    path, sep, query = raw.partition(b"?")
    if _BAD_PATH_BYTE.search(path):
        raise BadRequest("The request path holds characters that are not allowed.")
    if b"%" not in path and b";" not in path:
        segments = _plain_segments(path)
    else:
        segments = tuple(_decoded_segment(part) for part in _parts(path))
    return Target(raw=raw, path=path, query=query if sep else None, segments=segments)


def _plain_segments(path: bytes) -> tuple[str, ...]:
    """The common case, checked at once: visible ASCII (checked already),
    nothing encoded, no parameters."""
    plain = path[1:].decode("ascii").split("/")
    if plain[-1] == "":
        plain.pop()  # trailing slash
    if "" in plain:
        raise BadRequest("The request path has empty or encoded-slash segments.")
    if "." in plain or ".." in plain:
        raise BadRequest("The request path holds dot-segments.")
    return tuple(plain)


def _parts(path: bytes) -> list[bytes]:
    parts = path[1:].split(b"/")
    if parts and parts[-1] == b"":
        parts.pop()  # trailing slash
    return parts


def _decoded_segment(part: bytes) -> str:
    """One percent-decoded path segment, refused when it could be read two ways."""
    if not part:
        raise BadRequest("The request path has empty or encoded-slash segments.")
    decoded = unquote_to_bytes(part) if b"%" in part else part
    if b"/" in decoded or b"\\" in decoded:
        raise BadRequest("The request path has empty or encoded-slash segments.")
    if decoded is not part and _CONTROL_BYTE.search(decoded):
        raise BadRequest("The request path holds control characters.")
    try:
        text = decoded.decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequest("The request path is not valid UTF-8.") from None
    if text.split(";", 1)[0] in (".", ".."):
        raise BadRequest("The request path holds dot-segments.")
    if _DOUBLE_ENCODED.search(text):
        # A back end (or a filter in front of it) that decodes twice
        # would read a dot, a slash or a backslash here.
        raise BadRequest("The request path holds double-encoded separators.")
    return text


def match_vdir(
    vdirs: Sequence[VirtualDirectory], target: Target
) -> tuple[VirtualDirectory, tuple[str, ...]] | None:
    """The virtual directory with the longest matching path, and what follows it.

    Matching is by whole segments and case-insensitive, as IIS matches them.
    """
    segments = target.segments
    first = segments[0].lower() if segments else None
    best: VirtualDirectory | None = None
    longest = -1
    for vdir in vdirs:
        want = vdir.segments
        n = len(want)
        if n <= longest or n > len(segments) or (n and want[0] != first):
            continue
        # The first segment is compared above: with one, that is all of it.
        if n <= 1 or tuple(s.lower() for s in segments[1:n]) == want[1:]:
            best, longest = vdir, n
    if best is None:
        return None
    return best, segments[longest:]


def static_route(vdir: VirtualDirectory, target: Target, unavailable: Container[str] = ()) -> Route:
    """A fixed server list: in configured order, reachable ones first."""
    servers = tuple(s for s in vdir.servers if s not in unavailable) + tuple(
        s for s in vdir.servers if s in unavailable
    )
    return Route(vdir=vdir, servers=servers, target=target.raw, failover=True)


class MailboxLogon(NamedTuple):
    """What a mailbox URL asks for: explicit logon gives ``address``."""

    address: str | None  # None: implicit logon (the authenticated user's own)


def mailbox_logon(vdir: VirtualDirectory, rest: tuple[str, ...]) -> MailboxLogon:
    """Explicit logon names a mailbox after the virtual directory; else implicit.

    ``<name>`` is combined with the virtual directory's SMTP domain;
    ``<name>@<domain>`` overrides the domain.
    """
    if not rest:
        return MailboxLogon(address=None)
    name = rest[0]
    local, at, domain = name.partition("@")
    if not local or (at and not domain) or "@" in domain:
        raise BadRequest("The mailbox name in the path is malformed.")
    if not at:
        domain = vdir.smtp_domain or ""
    return MailboxLogon(address=f"{local}@{domain}")


def implicit_target(target: Target, vdir_segment_count: int, alias: str) -> bytes:
    """Rewrite ``/exchange/...`` to ``/exchange/<alias>/...`` (implicit logon).

    The virtual directory's segments keep the client's spelling; the alias is
    percent-encoded.  Anything after the virtual directory is kept.
    """
    parts = target.path[1:].split(b"/")
    head = parts[:vdir_segment_count]
    tail = parts[vdir_segment_count:]
    new = b"/" + b"/".join([*head, quote(alias, safe="").encode("ascii"), *tail])
    if not tail:
        new += b"/"
    if target.query is not None:
        new += b"?" + target.query
    return new


def check_mailbox_owner(owner: UserEntry | None) -> str:
    """The owner's mailbox store DN; 404 without a mailbox, 403 without HTTP."""
    if owner is None:
        raise NotFound("No such mailbox.")
    if not owner.http_enabled:
        raise Forbidden("HTTP access to this mailbox is disabled.")
    if not owner.home_mdb:
        raise NotFound("No such mailbox.")
    return owner.home_mdb


def mailbox_route(
    vdir: VirtualDirectory,
    target: bytes,
    server: str | None,
    owner_key: tuple[str, str],
) -> Route:
    """A mailbox lives on one server: no failover, no marks."""
    if server is None:
        raise NotFound("No such mailbox.", detail=f"no server for {owner_key}")
    return Route(vdir=vdir, servers=(server,), target=target, owner_key=owner_key)


def user_token(user: UserEntry) -> bytes:
    """The token a user's public-folder requests are hashed by: the entry's
    objectGUID (else objectSid), else the login in lower case."""
    return user.token or user.login.lower().encode("utf-8")


def public_order(
    policy: HashPolicy,
    token: bytes | None,
    replicas: Sequence[str],
    *,
    home: str | None = None,
) -> tuple[str, ...]:
    """The servers to try for a public folder, best first.

    With a user token: ``home`` (the user's default public store's server,
    default tree only) first, then the replicas in the user's hash order.
    Without one (no authentication): not balanced, name order.
    """
    if token is None:
        order = tuple(sorted(dict.fromkeys(replicas), key=str.lower))
    else:
        order = policy.order(token, replicas)
    if home:
        order = (home, *(s for s in order if s.lower() != home.lower()))
    return order


def public_route(
    vdir: VirtualDirectory,
    target: Target,
    servers: tuple[str, ...],
    token: bytes | None,
) -> Route:
    """Replicas: fail over and mark on connect failure, follow referrals."""
    if not servers:
        raise NotFound("This public folder tree has no replica.", detail=f"tree {vdir.tree}")
    return Route(
        vdir=vdir,
        servers=servers,
        target=target.raw,
        failover=True,
        mark=True,
        referrals=True,
        token=token if token is not None else b"",
        balanced=token is not None,
    )


def parse_replica_servers(values: Sequence[bytes] | None) -> tuple[str, ...]:
    """The host names of an ``X-Replica-Servers`` referral header (may be empty)."""
    names: list[str] = []
    for value in values or ():
        for part in value.split(b","):
            name = part.strip().decode("ascii", "replace")
            if name and all(c.isalnum() or c in "-._" for c in name):
                names.append(name)
    return tuple(dict.fromkeys(names))


def referral_candidates(
    policy: HashPolicy,
    route: Route,
    listed: Sequence[str],
    tried: Container[str],
) -> tuple[str, ...]:
    """Where to send a referred request: the listed servers not tried yet.

    Raises :class:`ReferralLoop` when every listed server was already tried.
    """
    order = public_order(policy, route.token if route.balanced else None, listed)
    fresh = tuple(s for s in order if s.lower() not in tried)
    if not fresh:
        raise ReferralLoop(detail=f"referred back to {', '.join(listed)}")
    return fresh


def folder_keys(vdir: VirtualDirectory, target: Target) -> list[tuple[str, ...]]:
    """Referral cache keys for a request, longest path first.

    A referral is remembered for the path it answered; a request below that
    path uses it too.
    """
    segments = tuple(s.lower() for s in target.segments)
    n = len(vdir.segments)
    return [segments[:i] for i in range(len(segments), n - 1, -1)]
