"""Header handling between client, front end and back end (pure functions).

DESIGN.md section 3: hop-by-hop headers, and those named in ``Connection``,
are never forwarded in either direction; the front-end headers are set by
the front end after deleting whatever the client sent under those names.
"""

from __future__ import annotations

from frontend.wire.persistence import connection_tokens

__all__ = [
    "FRONT_END_HEADERS",
    "HOP_BY_HOP",
    "TO_BACKEND_DROP",
    "TO_CLIENT_DROP",
    "backend_request_headers",
    "client_response_headers",
    "drop_connection_named",
    "end_to_end",
]

HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"trailers",
        b"transfer-encoding",
        b"upgrade",
        b"proxy-authorization",
        b"proxy-authenticate",
    }
)

# Set only by the front end; a client's copy is always dropped.
FRONT_END_HEADERS = frozenset({b"x-forwarded-for", b"front-end-https", b"x-front-end-server"})

# The back-end client frames the body itself (Content-Length, or chunked
# when the client's length is unknown) and asks for 100-continue itself.
_REFRAMED = frozenset({b"content-length", b"expect"})


Pairs = list[tuple[bytes, bytes]]

#: Request headers never forwarded as the client sent them.
TO_BACKEND_DROP = FRONT_END_HEADERS | _REFRAMED | HOP_BY_HOP
#: Response headers never relayed as the back end sent them (the front end
#: frames the body it relays itself).
TO_CLIENT_DROP = frozenset({b"content-length"}) | HOP_BY_HOP
# Connection tokens that name nothing left to drop.
_ALWAYS_DROPPED = HOP_BY_HOP | {b"close"}


def drop_connection_named(pairs: Pairs, connection: list[bytes]) -> Pairs:
    """``pairs`` without the headers that ``Connection`` values name."""
    if not connection:
        return pairs
    named = connection_tokens(connection) - _ALWAYS_DROPPED
    if not named:  # "keep-alive", "close": nothing more to drop
        return pairs
    return [pair for pair in pairs if pair[0].lower() not in named]


def end_to_end(headers: Pairs, drop: frozenset[bytes]) -> Pairs:
    """``headers`` without those ``drop`` names and those ``Connection`` names.

    The parsers build the same list as they read each field
    (:mod:`frontend.wire.request_head`, :mod:`frontend.wire.response_parser`);
    this is the rule for a list of headers already read.
    """
    out: Pairs = []
    listed: list[bytes] = []
    for pair in headers:
        low = pair[0].lower()
        if low in drop:
            if low == b"connection":
                listed.append(pair[1])
        else:
            out.append(pair)
    return drop_connection_named(out, listed)


def backend_request_headers(
    end_to_end: Pairs,
    *,
    client_address: str,
    secure: bool,
    frontend_name: str,
) -> Pairs:
    """The headers for the back end: the client's end-to-end headers (``Host``
    and ``Authorization`` unchanged), then the front end's own."""
    out = list(end_to_end)
    out.append((b"X-Forwarded-For", client_address.encode("ascii")))
    if secure:
        out.append((b"Front-End-Https", b"On"))
    out.append((b"X-Front-End-Server", frontend_name.encode("ascii")))
    return out


def client_response_headers(backend: Pairs) -> Pairs:
    """The back end's response headers that go on to the client."""
    return end_to_end(backend, TO_CLIENT_DROP)
