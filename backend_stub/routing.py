"""Decide what a stub server answers to a request path (pure logic, no I/O).

:func:`route` maps a request (method and target) to a :data:`Reply`:

- ``/exchange/<alias>[/...]``: the mailbox, or 404 if it lives elsewhere.
  ``<alias>@<domain>`` is accepted for ``<alias>`` (explicit logon with an
  SMTP address, section 5 of the design).  ``PUT`` and ``POST`` into a
  mailbox it holds are uploads (:class:`SinkReply`).
- ``/exchweb/bytes/<N>``: a streamed body of N pattern bytes.
- ``/exchweb/...``: a JSON echo of the request.
- a public folder path (segment-wise prefix, case-insensitive as Exchange
  URLs are): the content if this server holds a replica (``PUT`` and
  ``POST`` into it are uploads), otherwise a 421 referral when the request
  came through a front end, else 404.
- anything else: 404.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from http import HTTPStatus
from urllib.parse import unquote, urlsplit

from backend_stub.topology import FolderSpec, ServerSpec, path_segments

__all__ = [
    "EchoReply",
    "Reply",
    "SinkReply",
    "StreamReply",
    "TextReply",
    "find_folder",
    "request_path",
    "route",
]


@dataclass(frozen=True)
class TextReply:
    """A small text response with a status and optional extra headers."""

    status: int
    body: str
    reason: str = ""
    headers: tuple[tuple[str, str], ...] = field(default=())


@dataclass(frozen=True)
class StreamReply:
    """A body of *length* pattern bytes, streamed with flow control."""

    length: int


@dataclass(frozen=True)
class EchoReply:
    """A JSON description of the request as the server received it."""


@dataclass(frozen=True)
class SinkReply:
    """An upload taken in: once the whole body arrived, *status* with a text
    naming what it went into (*target*), its byte count and SHA-256."""

    status: int
    target: str
    reason: str = ""


Reply = TextReply | StreamReply | EchoReply | SinkReply

# The methods whose body is an upload into a mailbox or a folder held here,
# and the status each answers: 201 Created (WebDAV PUT) and 200 OK.
_UPLOADS = {"PUT": (201, "Created"), "POST": (200, "OK")}


def request_path(uri: str) -> str:
    """The path of a request target, without query or fragment.

    An absolute-form target (``http://host/path``) is reduced to its path.
    """
    if uri.startswith(("http://", "https://")):
        return urlsplit(uri).path or "/"
    return uri.split("?", 1)[0].split("#", 1)[0]


def find_folder(path: str, folders: Sequence[FolderSpec]) -> FolderSpec | None:
    """The folder whose path is the longest segment-wise prefix of *path*."""
    segments = tuple(unquote(seg).casefold() for seg in path_segments(path))
    best: FolderSpec | None = None
    for folder in folders:
        prefix = folder.segments
        if segments[: len(prefix)] == prefix and (best is None or len(prefix) > len(best.segments)):
            best = folder
    return best


def route(
    server: ServerSpec,
    folders: Sequence[FolderSpec],
    path: str,
    *,
    from_front_end: bool,
    method: str = "GET",
) -> Reply:
    """What *server* answers to a *method* request for *path* (without query).

    *from_front_end* says whether the request carried ``X-Front-End-Server``.
    Methods are case-sensitive, as in HTTP.
    """
    segments = [unquote(seg) for seg in path_segments(path)]
    head = segments[0].casefold() if segments else ""
    upload = _UPLOADS.get(method)
    if head == "exchange":
        return _to_mailbox(server, segments[1] if len(segments) > 1 else "", upload)
    if head == "exchweb":
        return _exchweb(segments[1:])
    return _to_folder(server, folders, path, upload, from_front_end=from_front_end)


def _to_mailbox(server: ServerSpec, alias: str, upload: tuple[int, str] | None) -> Reply:
    reply = _mailbox(server, alias)
    if upload is not None and reply.status == HTTPStatus.OK:
        return SinkReply(upload[0], f"mailbox {alias}", upload[1])
    return reply


def _exchweb(rest: Sequence[str]) -> Reply:
    if rest and rest[0].casefold() == "bytes":
        return _bytes(rest[1:])
    return EchoReply()


def _to_folder(
    server: ServerSpec,
    folders: Sequence[FolderSpec],
    path: str,
    upload: tuple[int, str] | None,
    *,
    from_front_end: bool,
) -> Reply:
    folder = find_folder(path, folders)
    if folder is None:
        return TextReply(404, f"no such folder or mailbox: {path}\n")
    if server.name in folder.servers:
        if upload is not None:
            return SinkReply(upload[0], f"folder {folder.path}", upload[1])
        return TextReply(200, folder.content)
    if from_front_end:
        replicas = ", ".join(folder.servers)
        return TextReply(
            421,
            f"{folder.path} is held by {replicas}\n",
            reason="Misdirected Request",
            headers=(("X-Replica-Servers", replicas),),
        )
    return TextReply(404, f"no replica of {folder.path} here\n")


def _mailbox(server: ServerSpec, alias: str) -> TextReply:
    if not alias:
        return TextReply(404, "no mailbox name in path\n")
    local = alias.split("@", 1)[0]
    if server.holds_mailbox(local):
        return TextReply(200, f"mailbox {alias} on {server.name}\n")
    return TextReply(404, f"no mailbox {alias} here\n")


def _bytes(rest: Sequence[str]) -> Reply:
    if len(rest) == 1 and rest[0].isascii() and rest[0].isdigit():
        return StreamReply(int(rest[0]))
    return TextReply(400, "expected /exchweb/bytes/<N> with N a byte count\n")
