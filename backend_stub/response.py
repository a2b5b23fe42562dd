"""Send a prepared response on a twisted.web request, applying a fault.

The fault modes that shape a response (``refuse`` acts on the listener, see
:mod:`backend_stub.server`):

- ``delay``: wait, without blocking, before sending the status and headers.
- ``cut``: send the status, headers (with the full Content-Length) and the
  first *after_bytes* body bytes, then close the connection.  The close is
  an orderly one issued after those bytes are flushed, so the client gets
  exactly *after_bytes* bytes followed by an early end of stream: a client
  must notice the truncation from Content-Length, the strictest case.
- ``hang``: send the status and headers and never finish.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from twisted.internet.interfaces import IDelayedCall
from twisted.python.failure import Failure
from twisted.web.server import Request

from backend_stub.faults import Fault
from backend_stub.streaming import PatternProducer

__all__ = ["Clock", "PreparedResponse", "ResponseSender"]


class Clock(Protocol):
    """The part of ``IReactorTime`` the stub uses (a reactor or a ``Clock``)."""

    def seconds(self) -> float: ...

    def callLater(
        self, delay: float, callable: Callable[..., object], *args: object, **kw: object
    ) -> IDelayedCall: ...


@dataclass(frozen=True)
class PreparedResponse:
    """A complete response: fixed *body*, or *stream_length* pattern bytes."""

    status: int
    reason: bytes | None = None
    headers: tuple[tuple[bytes, bytes], ...] = field(default=())
    body: bytes | None = None
    stream_length: int = 0

    @property
    def length(self) -> int:
        """The body length announced in Content-Length."""
        return len(self.body) if self.body is not None else self.stream_length


class ResponseSender:
    """Deliver one :class:`PreparedResponse` under one :class:`Fault`.

    *request* is a twisted.web ``Request`` whose ``render`` returned
    ``NOT_DONE_YET``.  If the client goes away, pending timers are cancelled
    and streaming stops.
    """

    def __init__(
        self,
        request: Request,
        response: PreparedResponse,
        fault: Fault,
        clock: Clock,
    ) -> None:
        self._request = request
        self._response = response
        self._fault = fault
        self._clock = clock
        self._call: IDelayedCall | None = None  # while a delay is pending
        self._producer: PatternProducer | None = None
        self._gone = False

    def start(self) -> None:
        """Send now, or after the delay of a ``delay`` fault."""
        self._request.notifyFinish().addErrback(self._connection_lost)
        if self._fault.mode == "delay" and self._fault.seconds > 0:
            self._call = self._clock.callLater(self._fault.seconds, self._send)
        else:
            self._send()

    def _connection_lost(self, _reason: Failure) -> None:
        self._gone = True
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None
        if self._producer is not None:
            self._producer.stopProducing()

    def _send(self) -> None:
        self._call = None
        if self._gone:
            return
        request, response = self._request, self._response
        if self._fault.mode in ("drop", "garbage"):
            transport = request.channel.transport
            if transport is None:  # the connection is gone: nothing to spoil
                return
            if self._fault.mode == "garbage":
                transport.write(b"HTTP/1.1 2OO NOT OK\r\n\x00\x01garbage\r\n\r\n")
            transport.loseConnection()
            return
        request.setResponseCode(response.status, response.reason)
        for name, value in response.headers:
            request.responseHeaders.addRawHeader(name, value)
        request.setHeader(b"Content-Length", b"%d" % response.length)
        if self._fault.mode == "hang":
            request.write(b"")  # status line and headers only, then nothing
            return
        limit = response.length
        if request.method == b"HEAD":
            limit = 0
        if self._fault.mode == "cut":
            limit = min(limit, self._fault.after_bytes)
        if response.body is not None:
            request.write(response.body[:limit])
            self._complete()
        else:
            self._producer = PatternProducer(request, limit, self._complete)
            self._producer.start()

    def _complete(self) -> None:
        if self._gone:
            return
        request = self._request
        if self._fault.mode == "cut":
            request.write(b"")  # make sure the headers went out even for 0 bytes
            request.channel.loseConnection()
        else:
            request.finish()
