"""A request body kept for a replay, for routes where a back end may refer.

A public-folder request goes to its back end with ``Expect: 100-continue``:
a back end that refers the request answers before asking for the body, and
the body, still unread, goes whole to the next server.  Only a back end
that asks for the body (or ignores the expectation) and then refers forces
a replay of bytes already sent; for that the body is copied as it streams
(:class:`Recorder`) into a :class:`Spool` (memory up to 64 KiB, then a
temporary file), and a :class:`Replay` sends it again, following the
client's bytes as they keep arriving.  The spool is closed when the request
ends.

The file is written and read on the reactor thread: it is a fresh temporary
file, served from the page cache, as nginx reads its own request buffers.
"""

from __future__ import annotations

import os
import tempfile
from typing import IO

from frontend.wire.interfaces import BodySink, BodySource

__all__ = ["Recorder", "Replay", "Spool"]

MEMORY = 1 << 16
CHUNK = 1 << 16


class Spool:
    """Bytes kept in order, readable from any offset, while more are added."""

    __slots__ = ("_file", "_memory", "_replays", "ended", "error", "size")

    def __init__(self) -> None:
        self._memory = bytearray()
        self._file: IO[bytes] | None = None
        self.size = 0
        self.ended = False
        self.error: str | None = None
        self._replays: list[Replay] = []

    @property
    def on_disk(self) -> bool:
        return self._file is not None

    def add(self, data: bytes) -> None:
        if self._file is not None:
            self._file.write(data)
        else:
            self._memory += data
            if len(self._memory) > MEMORY:
                # Open while the request lasts; close() closes it.
                self._file = tempfile.TemporaryFile(prefix="feproxy-body-")  # noqa: SIM115
                self._file.write(self._memory)
                self._memory = bytearray()
        self.size += len(data)
        for replay in list(self._replays):
            replay.more()

    def end(self, error: str | None) -> None:
        self.ended = True
        self.error = error
        for replay in list(self._replays):
            replay.more()

    def read(self, offset: int, limit: int) -> bytes:
        if self._file is None:
            return bytes(self._memory[offset : offset + limit])
        self._file.flush()
        return os.pread(self._file.fileno(), limit, offset)

    def replay(self, length: int | None) -> Replay:
        """A body source giving the spool's bytes from the start."""
        replay = Replay(self, length)
        self._replays.append(replay)
        return replay

    def forget(self, replay: Replay) -> None:
        if replay in self._replays:
            self._replays.remove(replay)

    def close(self) -> None:
        self._replays.clear()
        self._memory = bytearray()
        if self._file is not None:
            self._file.close()
            self._file = None


class Recorder:
    """A body source that streams ``source`` to its sink and keeps a copy."""

    __slots__ = ("_sink", "_source", "spool", "started")

    def __init__(self, source: BodySource, spool: Spool) -> None:
        self._source = source
        self.spool = spool
        self._sink: BodySink | None = None
        self.started = False

    @property
    def length(self) -> int | None:
        return self._source.length

    def stream_to(self, sink: BodySink) -> None:
        self._sink = sink
        self.started = True
        self._source.stream_to(self)

    def pause(self) -> None:
        if self._sink is not None:
            self._source.pause()

    def resume(self) -> None:
        self._source.resume()

    def detach(self) -> None:
        """The first back end is done with the body: keep reading it, into the spool only."""
        self._sink = None
        self._source.resume()

    def body_data(self, data: bytes) -> None:
        self.spool.add(data)
        if self._sink is not None:
            self._sink.body_data(data)

    def body_end(self, error: str | None) -> None:
        self.spool.end(error)
        sink, self._sink = self._sink, None
        if sink is not None:
            sink.body_end(error)


class Replay:
    """The spool's bytes as a body source, from the start, then live."""

    __slots__ = ("_done", "_offset", "_paused", "_running", "_sink", "_spool", "length")

    def __init__(self, spool: Spool, length: int | None) -> None:
        self._spool = spool
        self.length = length
        self._sink: BodySink | None = None
        self._offset = 0
        self._paused = False
        self._running = False
        self._done = False

    def stream_to(self, sink: BodySink) -> None:
        self._sink = sink
        self.more()

    def pause(self) -> None:
        self._paused = True

    def resume(self) -> None:
        self._paused = False
        self.more()

    def more(self) -> None:
        """Give the sink what the spool holds beyond what it had."""
        sink = self._sink
        if sink is None or self._running or self._done:
            return
        self._running = True
        spool = self._spool
        try:
            while not self._paused and self._offset < spool.size:
                data = spool.read(self._offset, CHUNK)
                if not data:
                    break
                self._offset += len(data)
                sink.body_data(data)
            if spool.ended and self._offset >= spool.size and not self._done:
                self._done = True
                spool.forget(self)
                sink.body_end(spool.error)
        finally:
            self._running = False
