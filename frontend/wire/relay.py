"""Streaming a back end's response body to the client, with flow control.

:class:`ResponseRelay` is the body's sink (see :mod:`frontend.wire.backend`)
and the client connection's producer: while the client is slow, the
back-end connection is not read; when the client goes away, the back-end
connection is aborted.  A body that breaks off reaches the client visibly
truncated, never as a complete response.  Timing is the connections' own:
the back-end connection cuts a body that stalls, the client connection a
client that stops reading.
"""

from __future__ import annotations

from collections.abc import Callable

from twisted.internet.interfaces import IPushProducer
from twisted.logger import Logger
from zope.interface import implementer

from frontend.wire.incoming import IncomingRequest
from frontend.wire.interfaces import Exchange

__all__ = ["Drain", "ResponseRelay"]

log = Logger()


@implementer(IPushProducer)
class ResponseRelay:
    """Relays ``response``'s body to ``request``; ``on_done(sent, error)`` at the end
    (``error`` None when the body was whole)."""

    __slots__ = ("_finished", "_on_done", "_request", "_response", "sent")

    def __init__(
        self,
        request: IncomingRequest,
        response: Exchange,
        on_done: Callable[[int, str | None], None],
    ) -> None:
        self._request = request
        self._response = response
        self._on_done = on_done
        self._finished = False
        self.sent = 0

    def start(self) -> None:
        self._request.register_producer(self)
        self._response.deliver_body(self)
        if not self._finished:  # the body did not come whole with the head
            self._request.flush()  # the client has the headers at once

    # the body's sink

    def body_data(self, data: bytes) -> None:
        if not self._finished:
            self.sent += len(data)
            self._request.write(data)

    def body_end(self, error: str | None) -> None:
        if self._finished:
            return
        self._finished = True
        self._request.unregister_producer()
        self._on_done(self.sent, error)
        if error is None:
            self._request.finish()
        else:
            log.warn(
                "back-end response cut after {sent} bytes: {reason}", sent=self.sent, reason=error
            )
            self._request.cut()

    def client_gone(self) -> None:
        """The client went away: abort the back-end connection."""
        if not self._finished:
            self._finished = True
            self._response.abort()
            self._on_done(self.sent, "the client went away")

    # IPushProducer, driven by the client's connection

    def pauseProducing(self) -> None:
        self._response.pause()

    def resumeProducing(self) -> None:
        self._response.resume()

    def stopProducing(self) -> None:
        self.client_gone()


class Drain:
    """Reads a body nobody needs (a referral's) to its end, so that its
    connection can be reused."""

    __slots__ = ()

    def body_data(self, data: bytes) -> None:
        pass

    def body_end(self, error: str | None) -> None:
        pass
