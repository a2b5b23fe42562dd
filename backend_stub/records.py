"""In-memory, bounded record of the requests the stub servers received."""

from __future__ import annotations

import hashlib
from collections import deque
from collections.abc import Sequence
from typing import IO, Any

__all__ = ["DEFAULT_LIMIT", "RequestLog", "body_digest", "make_record"]

DEFAULT_LIMIT = 10000

Record = dict[str, Any]


def body_digest(content: IO[bytes] | None) -> tuple[int, str]:
    """Length and SHA-256 (hex) of a spooled request body, read in chunks.

    The file position is restored to the start afterwards.
    """
    digest = hashlib.sha256()
    length = 0
    if content is not None:
        content.seek(0)
        while chunk := content.read(65536):
            digest.update(chunk)
            length += len(chunk)
        content.seek(0)
    return length, digest.hexdigest()


def make_record(
    *,
    server: str,
    method: bytes,
    uri: bytes,
    headers: Sequence[tuple[bytes, bytes]],
    body_length: int,
    body_sha256: str,
    time: float,
    peer: str = "",
) -> Record:
    """The JSON-ready record of one request; bytes are decoded as latin-1.

    ``host`` is the first ``Host`` header as sent, or None without one;
    ``peer`` is the client's ``address:port``.
    """
    pairs = [[name.decode("latin-1"), value.decode("latin-1")] for name, value in headers]
    host = next((value for name, value in pairs if name.lower() == "host"), None)
    return {
        "server": server,
        "method": method.decode("latin-1"),
        "uri": uri.decode("latin-1"),
        "host": host,
        "headers": pairs,
        "body_length": body_length,
        "body_sha256": body_sha256,
        "time": time,
        "peer": peer,
    }


class RequestLog:
    """The last *limit* request records of the whole farm, oldest first."""

    def __init__(self, limit: int = DEFAULT_LIMIT) -> None:
        self._records: deque[Record] = deque(maxlen=limit)

    def add(self, record: Record) -> None:
        """Append a record, dropping the oldest when full."""
        self._records.append(record)

    def list(self, server: str | None = None) -> list[Record]:
        """All records, or those of one server, oldest first."""
        return [r for r in self._records if server is None or r["server"] == server]

    def clear(self) -> int:
        """Forget every record; return how many there were."""
        count = len(self._records)
        self._records.clear()
        return count

    def __len__(self) -> int:
        return len(self._records)
