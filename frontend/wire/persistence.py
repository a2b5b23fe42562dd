"""The one place that reads ``Connection`` and decides whether a connection
outlives its exchange, for client connections and back-end connections alike.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

__all__ = ["backend_reusable", "client_keeps_alive", "connection_tokens"]


# Single Connection values seen (a handful, over and over: "keep-alive",
# "close"), with their tokens; bounded, emptied when full.
_SEEN: dict[bytes, frozenset[bytes]] = {}
_REMEMBER = 256


def connection_tokens(values: Sequence[bytes]) -> frozenset[bytes]:
    """The tokens of ``Connection`` header values, lowercased, empty ones dropped."""
    if len(values) == 1:
        tokens = _SEEN.get(values[0])
        if tokens is None:
            tokens = _tokens(values)
            if len(_SEEN) >= _REMEMBER:
                _SEEN.clear()
            _SEEN[values[0]] = tokens
        return tokens
    return _tokens(values)


def _tokens(values: Iterable[bytes]) -> frozenset[bytes]:
    out: set[bytes] = set()
    for value in values:
        for part in value.split(b","):
            token = part.strip().lower()
            if token:
                out.add(token)
    return frozenset(out)


def client_keeps_alive(version: bytes, tokens: frozenset[bytes]) -> bool:
    """Whether a client connection may carry another request after this one.

    HTTP/1.1 persists unless ``close`` is listed.  HTTP/1.0 connections are
    closed after their response, ``keep-alive`` or not: few 1.0 clients are
    left, and closing them keeps the framing of their answers simple (a body
    of unknown length is delimited by the close).
    """
    return version == b"HTTP/1.1" and b"close" not in tokens


def backend_reusable(version: bytes, tokens: frozenset[bytes], *, delimited: bool) -> bool:
    """Whether a back-end connection may go back to the pool after a response.

    ``delimited``: the body's end was known from its framing (a length or the
    last chunk), not from the connection closing.  An HTTP/1.0 response keeps
    the connection only when it says ``keep-alive`` (RFC 9112 section 9.3).
    """
    if not delimited or b"close" in tokens:
        return False
    return version == b"HTTP/1.1" or b"keep-alive" in tokens
