"""The chunked transfer coding, decoded from pieces of any size.

One decoder serves both sides: request bodies from clients (``strict``:
every line must end with CRLF, as anything else is how requests are
smuggled past one parser and not another) and response bodies from back
ends (a bare LF ending a chunk-size line is tolerated there).
"""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["ChunkedDecoder", "MAX_TRAILERS"]

MAX_TRAILERS = 64 * 1024
MAX_SIZE_LINE = 4096
_HEX = b"0123456789abcdefABCDEF"
_SIZE, _DATA, _DATA_END, _TRAILER = range(4)


class ChunkedDecoder:
    """De-chunks a body; trailers are read and dropped."""

    __slots__ = ("_buf", "_left", "_state", "_trailer", "_strict", "done")

    def __init__(self, *, strict: bool = False) -> None:
        self._buf = b""
        self._left = self._trailer = 0
        self._state = _SIZE
        self._strict = strict
        self.done = False

    def feed(self, data: bytes, out: Callable[[bytes], None]) -> bytes:
        """Give the payload in ``data`` to ``out``; return the bytes after the body's end.

        Raises ValueError when the framing is broken.  What ``out`` raises
        goes through unchanged.
        """
        if self._buf:
            data, self._buf = self._buf + data, b""
        pos, n = 0, len(data)
        while pos < n:
            state = self._state
            if state == _DATA:
                take = min(self._left, n - pos)
                out(data if take == n else data[pos : pos + take])
                pos += take
                self._left -= take
                if not self._left:
                    self._state = _DATA_END
            elif state == _DATA_END:
                if data[pos : pos + 2] != b"\r\n"[: n - pos]:
                    raise ValueError("no CRLF after chunk data")
                if n - pos < 2:
                    self._buf = data[pos:]
                    return b""
                pos += 2
                self._state = _SIZE
            else:
                eol = data.find(b"\n", pos)
                if eol < 0:
                    if n - pos > MAX_SIZE_LINE:
                        raise ValueError("chunk line too long")
                    self._buf = data[pos:]
                    return b""
                raw = data[pos:eol]
                line = raw[:-1] if raw.endswith(b"\r") else raw
                if self._strict and (line is raw or b"\r" in line):
                    raise ValueError("a chunk line not ended by CRLF")
                pos = eol + 1
                if state == _TRAILER:
                    self._trailer += len(raw) + 1
                    if not line:
                        self.done = True
                        return data[pos:]
                    if self._trailer > MAX_TRAILERS:
                        raise ValueError("trailers over 64 KiB")
                    continue
                size = line.partition(b";")[0].strip(b" \t")
                if not size or size.strip(_HEX) or len(size) > 15:
                    raise ValueError(f"bad chunk size {line[:30]!r}")
                self._left = int(size, 16)
                self._state = _DATA if self._left else _TRAILER
        return b""
