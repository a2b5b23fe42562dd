"""A client connection driven in memory: a StringTransport, a Clock and a handler
that keeps the requests (and answers them when told how)."""

from __future__ import annotations

from collections.abc import Callable

from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure

from frontend.wire.incoming import IncomingRequest
from frontend.wire.server import ClientConnection, ClientLimits, FrontEndFactory

H = b"Host: fe\r\n"


class HalfClosingTransport(StringTransport):
    """A StringTransport that also knows TCP's half-close."""

    def __init__(self) -> None:
        StringTransport.__init__(
            self, peerAddress=IPv4Address("TCP", "192.0.2.7", 5555), lenient=True
        )
        self.write_closed = False

    def loseWriteConnection(self) -> None:
        self.write_closed = True


class Sink:
    """A body sink that keeps what it gets."""

    def __init__(self) -> None:
        self.data = b""
        self.end: tuple[bool, str] | None = None

    def body_data(self, data: bytes) -> None:
        self.data += data

    def body_end(self, error: str | None) -> None:
        self.end = (error is None, error or "")


class Conn:
    """One client connection in memory; requests are kept, answered by ``answer``."""

    def __init__(
        self,
        limits: ClientLimits | None = None,
        answer: Callable[[IncomingRequest], object] | None = None,
    ) -> None:
        self.clock = Clock()
        self.requests: list[IncomingRequest] = []
        self.answer = answer
        self.gone: list[IncomingRequest] = []
        self.factory = FrontEndFactory(self, limits or ClientLimits(), self.clock)
        self.proto: ClientConnection = self.factory.buildProtocol(None)
        self.transport = HalfClosingTransport()
        self.proto.makeConnection(self.transport)

    def handle(self, request: IncomingRequest) -> None:
        self.requests.append(request)
        request.on_gone = lambda: self.gone.append(request)
        if self.answer is not None:
            self.answer(request)

    def send(self, data: bytes) -> None:
        self.proto.dataReceived(data)

    def lose(self) -> None:
        self.proto.connectionLost(Failure(ConnectionError("gone")))

    def take(self) -> bytes:
        """What was written since the last call."""
        out = bytes(self.transport.value())
        self.transport.clear()
        return out

    @property
    def out(self) -> bytes:
        return bytes(self.transport.value())

    @property
    def closed(self) -> bool:
        return bool(self.transport.disconnecting)

    @property
    def reading(self) -> bool:
        return self.transport.producerState == "producing"


def ok(request: IncomingRequest, body: bytes = b"hi") -> None:
    """Answer 200 with ``body``."""
    request.respond(200, b"OK", [(b"X-A", b"1")], len(body))
    request.write(body)
    request.finish()


def read_then_ok(request: IncomingRequest) -> Sink:
    """Read the body into a Sink, answering 200 with it once complete."""
    sink = Sink()

    class Answering(Sink):
        def body_end(self, error: str | None) -> None:
            sink.body_end(error)
            if error is None:
                ok(request, sink.data)

        def body_data(self, data: bytes) -> None:
            sink.body_data(data)

    if request.has_body:
        request.stream_to(Answering())
    else:
        ok(request, b"")
    return sink
