"""A push producer that streams N bytes of a fixed pattern with flow control.

Byte *i* of the stream is ``PATTERN[i % len(PATTERN)]``, so a client can check
any part of a large body without keeping it.  Memory stays flat whatever N
is: one pre-built chunk is written again and again, and writing pauses
whenever the transport's buffer is full.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from twisted.internet.interfaces import IPushProducer
from zope.interface import implementer

__all__ = ["CHUNK_SIZE", "PATTERN", "PatternProducer", "pattern_bytes"]

PATTERN = b"0123456789abcdef"
CHUNK_SIZE = 64 * 1024
_CHUNK = PATTERN * (CHUNK_SIZE // len(PATTERN))


def pattern_bytes(offset: int, length: int) -> bytes:
    """The *length* bytes of the pattern stream starting at *offset*."""
    start = offset % len(PATTERN)
    reps = (start + length) // len(PATTERN) + 1
    return (PATTERN * reps)[start : start + length]


class Consumer(Protocol):
    """What the producer writes to: a twisted.web request."""

    def registerProducer(self, producer: object, *, streaming: bool) -> None: ...

    def unregisterProducer(self) -> None: ...

    def write(self, data: bytes) -> None: ...


@implementer(IPushProducer)
class PatternProducer:
    """Write *length* pattern bytes to *consumer*, then call *on_done*.

    Register with :meth:`start`.  The consumer pauses and resumes it; when the
    connection goes away the consumer (or whoever watches the request) calls
    :meth:`stopProducing` and *on_done* is never called.
    """

    def __init__(self, consumer: Consumer, length: int, on_done: Callable[[], None]) -> None:
        self._consumer = consumer
        self._remaining = length
        self._on_done = on_done
        self._paused = False
        self._stopped = False
        self._running = False
        self._finished = False

    @property
    def remaining(self) -> int:
        """Bytes not yet written."""
        return self._remaining

    def start(self) -> None:
        """Register with the consumer as a streaming producer and start writing."""
        self._consumer.registerProducer(self, streaming=True)
        self.resumeProducing()

    def resumeProducing(self) -> None:
        """Write chunks until paused, stopped or done."""
        self._paused = False
        if self._running:
            # Called back from inside our own write(): the loop goes on.
            return
        self._running = True
        try:
            while not self._paused and not self._stopped and self._remaining > 0:
                size = min(self._remaining, CHUNK_SIZE)
                self._remaining -= size
                self._consumer.write(_CHUNK if size == CHUNK_SIZE else _CHUNK[:size])
        finally:
            self._running = False
        if self._remaining == 0 and not self._stopped and not self._finished:
            self._finished = True
            self._consumer.unregisterProducer()
            self._on_done()

    def pauseProducing(self) -> None:
        """Stop writing until resumed (the transport's buffer is full)."""
        self._paused = True

    def stopProducing(self) -> None:
        """Stop for good (the client went away)."""
        self._stopped = True
