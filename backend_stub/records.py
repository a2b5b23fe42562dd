"""In-memory, bounded record of the requests the stub servers received."""

from __future__ import annotations

import hashlib
from collections import deque
from collections.abc import Sequence
from typing import Any, NamedTuple

__all__ = ["DEFAULT_LIMIT", "BodyDigest", "Record", "RequestHead", "RequestLog", "make_record"]

DEFAULT_LIMIT = 10000

Record = dict[str, Any]


class RequestHead(NamedTuple):
    """The request line, as received."""

    method: bytes
    uri: bytes
    version: bytes


class BodyDigest:
    """The running length and SHA-256 of a request body, fed chunk by chunk.

    Nothing of the body is kept: memory stays flat whatever its size.
    ``complete`` is set once the whole declared (or chunked) body arrived.
    """

    def __init__(self) -> None:
        self._hash = hashlib.sha256()
        self.length = 0
        self.complete = False

    def update(self, chunk: bytes) -> None:
        """Count and hash one more chunk of the body."""
        self._hash.update(chunk)
        self.length += len(chunk)

    @property
    def sha256(self) -> str:
        """The SHA-256 (hex) of the bytes received so far."""
        return self._hash.hexdigest()


def make_record(
    *,
    server: str,
    head: RequestHead,
    headers: Sequence[tuple[bytes, bytes]],
    body: BodyDigest,
    time: float,
    peer: str = "",
    expect: bytes | None = None,
    continued: bool = False,
) -> Record:
    """The JSON-ready record of one request; bytes are decoded as latin-1.

    ``host`` is the first ``Host`` header as sent, or None without one;
    ``peer`` is the client's ``address:port``; ``body`` the digest of what
    arrived of the body, ``body.complete`` whether that is the whole body
    (False: the connection was lost mid-body, or the server answered before
    reading it); ``expect`` the ``Expect`` header as
    sent (None without one); ``continued`` whether the server answered
    ``100 Continue``.
    """
    pairs = [[name.decode("latin-1"), value.decode("latin-1")] for name, value in headers]
    host = next((value for name, value in pairs if name.lower() == "host"), None)
    return {
        "server": server,
        "method": head.method.decode("latin-1"),
        "uri": head.uri.decode("latin-1"),
        "host": host,
        "headers": pairs,
        "body_length": body.length,
        "body_sha256": body.sha256,
        "body_complete": body.complete,
        "expect": None if expect is None else expect.decode("latin-1"),
        "continued": continued,
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
