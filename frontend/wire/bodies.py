"""Request bodies as the front end holds them, and where response bodies go."""

from __future__ import annotations

from typing import IO
from typing import Protocol as _Protocol

__all__ = ["EMPTY_BODY", "BodySink", "RequestBody"]


class RequestBody:
    """A client's request body, fully read; replayable (sent again after a referral).

    Small bodies are ``data``; large ones a seekable ``file`` of ``length`` bytes.
    """

    __slots__ = ("data", "file", "length")

    def __init__(
        self, data: bytes | None = None, file: IO[bytes] | None = None, length: int = 0
    ) -> None:
        if data is None and file is None and length:
            raise ValueError(f"a body of {length} bytes needs data or a file")
        self.data = data
        self.file = file
        self.length = len(data) if data is not None else length


EMPTY_BODY = RequestBody(b"")


class BodySink(_Protocol):
    """Receives a response body: payload bytes, then the end (reason "" when complete)."""

    def body_data(self, data: bytes) -> None: ...

    def body_end(self, complete: bool, reason: str) -> None: ...
