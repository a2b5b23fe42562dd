"""The seams of the wire layer, as Protocols: what the request handler gets
(a client request) and gives (a handler), what the back-end client offers,
and how bodies flow between them.

A body flows from a :class:`BodySource` to a :class:`BodySink`; the sink
pushes back with the source's ``pause``/``resume`` when it cannot take more.
"""

from __future__ import annotations

from typing import NamedTuple, Protocol

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTCP, IReactorTime

__all__ = [
    "BackendClient",
    "BodySink",
    "BodySource",
    "Exchange",
    "IBackendReactor",
    "OutgoingRequest",
    "PushProducer",
]

Pairs = list[tuple[bytes, bytes]]


class BodySink(Protocol):
    """Receives a body: payload bytes, then its end: ``error`` None when the
    body is complete, else why it broke off (for the log)."""

    def body_data(self, data: bytes) -> None: ...

    def body_end(self, error: str | None) -> None: ...


class BodySource(Protocol):
    """A request body that can be streamed once to a sink."""

    @property
    def length(self) -> int | None:
        """The body's length; None when unknown (it is then sent chunked)."""

    def stream_to(self, sink: BodySink) -> None:
        """Start giving the body to ``sink``."""

    def pause(self) -> None:
        """Give nothing more until :meth:`resume`."""

    def resume(self) -> None: ...


class PushProducer(Protocol):
    """Twisted's IPushProducer, as a Protocol: what writes to a consumer."""

    def pauseProducing(self) -> None: ...

    def resumeProducing(self) -> None: ...

    def stopProducing(self) -> None: ...


class OutgoingRequest(NamedTuple):
    """A request for a back end.

    ``body`` None: no body.  ``expect_continue``: the head goes with
    ``Expect: 100-continue`` and the body only once the back end asks for it
    (or has not answered within a second); a final answer that comes first
    leaves the body untouched.
    """

    method: bytes
    target: bytes
    headers: Pairs
    body: BodySource | None = None
    expect_continue: bool = False


class Exchange(Protocol):
    """A back end's response, head received; its body follows through
    :meth:`deliver_body`.

    ``headers`` are as received, framing headers included; ``end_to_end``
    those that go on to the client; ``length`` is the body's length (0
    without a body), None when it is chunked or ends with the connection.
    ``body_sent`` says whether any byte of the request body went to the back
    end; ``peer`` is the back end's address as connected, ``host:port``
    (``[host]:port`` for IPv6), for the access log.
    """

    code: int
    phrase: bytes
    headers: Pairs
    end_to_end: Pairs
    length: int | None
    body_sent: bool
    peer: str

    def header(self, name: bytes) -> list[bytes]: ...

    def deliver_body(self, sink: BodySink) -> None: ...

    def whole_body(self) -> bytes | None:
        """The whole body if it came with the head (then taken), else None."""

    def pause(self) -> None: ...

    def resume(self) -> None: ...

    def abort(self) -> None: ...


class IBackendReactor(IReactorTCP, IReactorTime):
    """What the back-end client asks of its reactor: TCP connections and time."""


class BackendClient(Protocol):
    """Sends requests to back ends by server name."""

    def send(self, server: str, request: OutgoingRequest) -> Deferred[Exchange]:
        """Fires with the response once its head is read."""

    def close_idle(self) -> None:
        """Close the pooled idle connections (at reload and stop)."""
