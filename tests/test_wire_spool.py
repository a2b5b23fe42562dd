"""The copy of a request body kept for a replay: Spool, Recorder, Replay."""

from __future__ import annotations

import errno
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from frontend.wire import spool as spool_module
from frontend.wire.spool import MEMORY, Recorder, Replay, Spool
from tests.backend_doubles import Sink, Source


class PausingSink(Sink):
    """A sink that pauses its source after each piece (a back end that is slow)."""

    def __init__(self, source: Replay) -> None:
        super().__init__()
        self.source = source

    def body_data(self, data: bytes) -> None:
        super().body_data(data)
        self.source.pause()


@pytest.fixture
def new_spool() -> Iterator[Callable[[], Spool]]:
    """Makes spools, closed after the test whatever happens."""
    made: list[Spool] = []

    def make() -> Spool:
        made.append(Spool())
        return made[-1]

    yield make
    for spool in made:
        spool.close()


def test_spool_keeps_bytes_in_memory_up_to_64k(new_spool: Callable[[], Spool]) -> None:
    """Up to 64 KiB the copy stays in memory; any offset reads back."""
    spool = new_spool()
    spool.add(b"a" * (MEMORY - 1))
    spool.add(b"b")
    assert not spool.on_disk
    assert spool.size == MEMORY
    assert spool.read(MEMORY - 2, 10) == b"ab"


def test_spool_moves_to_a_temporary_file_past_64k(new_spool: Callable[[], Spool]) -> None:
    """One byte past 64 KiB the copy moves to a temporary file, whole and in order."""
    spool = new_spool()
    data = os.urandom(MEMORY + 1)
    spool.add(data[:1000])
    spool.add(data[1000:])
    assert spool.on_disk
    assert spool.size == len(data)
    spool.add(b"tail")
    assert spool.read(0, len(data) + 10) == data + b"tail"
    assert spool.read(MEMORY - 1, 3) == data[MEMORY - 1 :] + b"t"


def test_close_closes_and_removes_the_file(new_spool: Callable[[], Spool]) -> None:
    """close() closes the temporary file (the name is gone, the descriptor freed)."""
    spool = new_spool()
    spool.add(b"x" * (MEMORY + 1))
    f = spool._file
    assert f is not None
    fd = f.fileno()
    name = f.name
    spool.close()
    assert f.closed
    assert not spool.on_disk
    with pytest.raises(OSError, match=rf"^\[Errno {errno.EBADF}\]"):  # the descriptor is freed
        os.fstat(fd)
    assert not isinstance(name, str) or not Path(name).exists()


def test_replay_gives_what_was_kept_then_the_end(new_spool: Callable[[], Spool]) -> None:
    """A replay of an ended spool gives every byte, then the spool's end."""
    spool = new_spool()
    data = os.urandom(3 * MEMORY)
    spool.add(data)
    spool.end(None)
    replay = spool.replay(len(data))
    assert replay.length == len(data)
    sink = Sink()
    replay.stream_to(sink)
    assert sink.body == data
    assert sink.result == (True, "")


def test_replay_started_before_the_end_follows_live_data(new_spool: Callable[[], Spool]) -> None:
    """A replay started before the body's end gives the past, then follows live data."""
    spool = new_spool()
    spool.add(b"past")
    replay = spool.replay(None)
    sink = Sink()
    replay.stream_to(sink)
    assert sink.body == b"past"
    assert sink.result is None
    spool.add(b"x" * MEMORY)
    assert spool.on_disk
    assert sink.received == 4 + MEMORY
    spool.add(b"live")
    assert sink.body.endswith(b"live")
    assert sink.result is None
    spool.end(None)
    assert sink.result == (True, "")
    assert sink.body == b"past" + b"x" * MEMORY + b"live"


def test_replay_pauses_and_resumes(new_spool: Callable[[], Spool]) -> None:
    """A paused replay gives nothing; resume gives the rest, then the end."""
    spool = new_spool()
    spool.add(b"a" * (2 * spool_module.CHUNK + 5))
    spool.end(None)
    replay = spool.replay(None)
    sink = PausingSink(replay)
    replay.stream_to(sink)
    assert sink.chunks == [b"a" * spool_module.CHUNK]
    assert sink.result is None
    replay.resume()
    assert sink.received == 2 * spool_module.CHUNK
    assert sink.result is None
    replay.resume()
    assert sink.received == 2 * spool_module.CHUNK + 5
    assert sink.result == (True, "")
    replay.resume()  # after the end: nothing more
    assert len(sink.chunks) == 3


def test_paused_replay_does_not_follow_live_data(new_spool: Callable[[], Spool]) -> None:
    """Data added while a replay is paused waits for its resume."""
    spool = new_spool()
    replay = spool.replay(None)
    sink = Sink()
    replay.stream_to(sink)
    replay.pause()
    spool.add(b"later")
    spool.end(None)
    assert sink.chunks == []
    assert sink.result is None
    replay.resume()
    assert sink.body == b"later"
    assert sink.result == (True, "")


def test_incomplete_end_reaches_the_replay(new_spool: Callable[[], Spool]) -> None:
    """A body that broke off ends its replays incomplete, with the reason."""
    spool = new_spool()
    replay = spool.replay(10)
    sink = Sink()
    replay.stream_to(sink)
    spool.add(b"abc")
    spool.end("client went away")
    assert sink.body == b"abc"
    assert sink.result == (False, "client went away")


def test_recorder_streams_and_keeps_a_copy(new_spool: Callable[[], Spool]) -> None:
    """The recorder streams to its sink, keeps a copy and passes pause/resume on."""
    source = Source(6, [b"abc"], ends=False)
    spool = new_spool()
    recorder = Recorder(source, spool)
    assert recorder.length == 6
    assert not recorder.started
    sink = Sink()
    recorder.stream_to(sink)
    assert recorder.started
    assert sink.body == b"abc"
    assert spool.read(0, 10) == b"abc"
    recorder.pause()
    assert source.paused
    recorder.resume()
    assert not source.paused
    source.give(b"def")
    source.finish()
    assert sink.body == b"abcdef"
    assert sink.result == (True, "")
    assert spool.read(0, 10) == b"abcdef"
    assert spool.ended
    assert spool.error is None


def test_recorder_pause_before_streaming_is_ignored(new_spool: Callable[[], Spool]) -> None:
    """Nothing is read before stream_to, so there is nothing to pause."""
    source = Source(3, [b"abc"])
    recorder = Recorder(source, new_spool())
    recorder.pause()
    assert not source.paused


def test_detached_recorder_keeps_reading_into_the_spool_for_a_replay(
    new_spool: Callable[[], Spool],
) -> None:
    """A detached recorder reads on into the spool; a replay gives all to the next."""
    source = Source(9, [b"abc"], ends=False)
    spool = new_spool()
    recorder = Recorder(source, spool)
    first = Sink()
    recorder.stream_to(first)
    recorder.pause()  # the first back end pushed back
    recorder.detach()
    assert not source.paused
    recorder.pause()  # nobody's push-back matters now
    assert not source.paused
    replay = spool.replay(9)
    second = Sink()
    replay.stream_to(second)
    source.give(b"def", b"ghi")
    source.finish()
    assert first.body == b"abc"
    assert first.result is None
    assert second.body == b"abcdefghi"
    assert second.result == (True, "")
