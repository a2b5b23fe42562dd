"""Streaming a back end's response body to the client, with flow control.

:class:`ResponseRelay` is the body's sink (see :mod:`frontend.wire.upstream`) and
the client connection's producer: while the client is slow, the back-end
connection is not read; when the client goes away, the back-end connection
is aborted.  A back end that sends nothing for ``idle_timeout`` seconds
while the client is ready for more is cut off, and the client sees the body
truncated (never a short body that looks complete).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet.interfaces import IPushProducer
from twisted.logger import Logger
from zope.interface import implementer

from frontend.wire.timers import Deadline

__all__ = ["ResponseRelay", "Drain"]

log = Logger()


@implementer(IPushProducer)
class ResponseRelay:
    """Relays ``response``'s body to ``request``; ``on_done(sent, complete)`` at the end."""

    __slots__ = (
        "_request",
        "_response",
        "_on_done",
        "_idle_timeout",
        "_deadline",
        "_finished",
        "sent",
    )

    def __init__(
        self,
        request: Any,
        response: Any,
        on_done: Callable[[int, bool], None],
        clock: Any,
        idle_timeout: float,
    ) -> None:
        self._request = request
        self._response = response
        self._on_done = on_done
        self._idle_timeout = idle_timeout
        self._deadline = Deadline(clock)
        self._finished = False
        self.sent = 0

    def start(self) -> None:
        self._request.register_producer(self)
        self._response.deliver_body(self)
        if not self._finished:  # the body did not come whole with the head
            self._request.flush()  # the client has the headers at once
            self._deadline.set(self._idle_timeout, self._stalled)

    # the body's sink

    def body_data(self, data: bytes) -> None:
        if self._finished:
            return
        self.sent += len(data)
        if self._deadline.pending:
            self._deadline.set(self._idle_timeout, self._stalled)
        self._request.write(data)

    def body_end(self, complete: bool, reason: str) -> None:
        if self._finished:
            return
        self._finished = True
        self._deadline.stop()
        self._request.unregister_producer()
        self._on_done(self.sent, complete)
        if complete:
            self._request.finish()
        else:
            log.warn(
                "back-end response cut after {sent} bytes: {reason}", sent=self.sent, reason=reason
            )
            self._request.cut()

    def _stalled(self) -> None:
        log.warn("back end sent nothing for {t}s mid-body: cutting it off", t=self._idle_timeout)
        self._response.abort()

    def client_gone(self) -> None:
        """The client went away: abort the back-end connection."""
        if not self._finished:
            self._finished = True
            self._deadline.stop()
            self._response.abort()
            self._on_done(self.sent, False)

    # IPushProducer, driven by the client's transport

    def pauseProducing(self) -> None:
        self._deadline.clear()  # a slow client is not the back end's fault
        self._response.pause()

    def resumeProducing(self) -> None:
        if not self._finished:
            self._deadline.set(self._idle_timeout, self._stalled)
        self._response.resume()

    def stopProducing(self) -> None:
        self.client_gone()


class Drain:
    """Reads a body nobody needs (a referral's) to its end, so that its
    connection can be reused."""

    __slots__ = ()

    def body_data(self, data: bytes) -> None:
        pass

    def body_end(self, complete: bool, reason: str) -> None:
        pass
