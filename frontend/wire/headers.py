"""Header handling between client, front end and back end (pure functions).

DESIGN.md section 3: hop-by-hop headers, and those named in ``Connection``,
are never forwarded in either direction; the front-end headers are set by
the front end after deleting whatever the client sent under those names.
"""

from __future__ import annotations

from frontend.wire.persistence import connection_tokens

__all__ = [
    "HOP_BY_HOP",
    "FRONT_END_HEADERS",
    "backend_request_headers",
    "client_response_headers",
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


def _end_to_end(headers: Pairs, drop: frozenset[bytes]) -> Pairs:
    """``headers`` without the hop-by-hop ones, those ``drop`` names, and those
    ``Connection`` names (one pass; a second only when Connection names any)."""
    out: Pairs = []
    listed: list[bytes] = []
    for pair in headers:
        low = pair[0].lower()
        if low in drop or low in HOP_BY_HOP:
            if low == b"connection":
                listed.append(pair[1])
        else:
            out.append(pair)
    if listed:
        named = connection_tokens(listed)
        out = [pair for pair in out if pair[0].lower() not in named]
    return out


_TO_BACKEND_DROP = FRONT_END_HEADERS | _REFRAMED | HOP_BY_HOP


def backend_request_headers(
    client: Pairs,
    *,
    client_address: str,
    secure: bool,
    frontend_name: str,
) -> Pairs:
    """The headers to send to the back end for a client's request headers.

    ``Host`` and ``Authorization`` pass unchanged; hop-by-hop headers go;
    the front-end headers are replaced by the front end's own values.
    """
    out = _end_to_end(client, _TO_BACKEND_DROP)
    out.append((b"X-Forwarded-For", client_address.encode("ascii")))
    if secure:
        out.append((b"Front-End-Https", b"On"))
    out.append((b"X-Front-End-Server", frontend_name.encode("ascii")))
    return out


_FRAMING = frozenset({b"content-length"}) | HOP_BY_HOP


def client_response_headers(backend: Pairs) -> Pairs:
    """The back end's response headers that go on to the client.

    Content-Length goes too: the front end frames the body it relays.
    """
    return _end_to_end(backend, _FRAMING)
