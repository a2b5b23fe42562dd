"""Sending a request to a back end and streaming its answer to the client.

:class:`BackendAgent` keeps a persistent connection pool per back end and
sends the client's request-target byte for byte (``twisted.web.client.Agent``
would re-serialise it from a parsed URI).  :class:`ResponseRelay` streams the
response body with flow control: the back end is paused while the client is
slow, and aborted when the client goes away.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Mapping
from typing import IO, Any

from twisted.internet import defer
from twisted.internet.endpoints import HostnameEndpoint, TCP4ClientEndpoint
from twisted.internet.interfaces import IConsumer, IPushProducer, IStreamClientEndpoint
from twisted.internet.protocol import Protocol, connectionDone
from twisted.internet.task import Cooperator
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.client import (
    URI,
    FileBodyProducer,
    HTTPConnectionPool,
    ResponseDone,
    _AgentBase,
    _HTTP11ClientFactory,
)
from twisted.web.http import PotentialDataLoss
from twisted.web.http_headers import Headers
from twisted.web.iweb import UNKNOWN_LENGTH, IBodyProducer, IResponse
from zope.interface import implementer

from frontend.errors import GatewayTimeout

__all__ = ["BackendAgent", "RequestBody", "ResponseRelay", "make_pool"]

log = Logger()


def make_pool(reactor: Any, max_idle_per_backend: int, idle_timeout: float) -> HTTPConnectionPool:
    """A keep-alive pool: ``max_idle_per_backend`` idle connections per server."""
    pool = HTTPConnectionPool(reactor, persistent=True)
    pool._factory = _QuietClientFactory  # one log line per connection is noise
    pool.maxPersistentPerHost = max_idle_per_backend
    pool.cachedConnectionTimeout = max(1, round(idle_timeout))
    pool.retryAutomatically = True  # only idempotent methods without a body
    return pool


class _QuietClientFactory(_HTTP11ClientFactory):
    noisy = False


class BackendAgent(_AgentBase):
    """Sends requests to back ends by host name, over plain HTTP.

    Like Twisted's own ``ProxyAgent``, it builds on ``_AgentBase`` so that it
    can choose the endpoint and send the request-target unchanged.
    ``hosts`` maps back-end host names to addresses (tests and unusual
    networks); other names are resolved by the reactor, never blocking.
    """

    def __init__(
        self,
        reactor: Any,
        pool: HTTPConnectionPool,
        *,
        port: int,
        connect_timeout: float,
        response_timeout: float,
        hosts: Mapping[str, str],
    ) -> None:
        super().__init__(reactor, pool)
        self._port = port
        self._connect_timeout = connect_timeout
        self._response_timeout = response_timeout
        self._hosts = {k.lower(): v for k, v in hosts.items()}

    def endpoint_for(self, server: str) -> IStreamClientEndpoint:
        address = self._hosts.get(server.lower())
        if address is not None:
            return TCP4ClientEndpoint(
                self._reactor, address, self._port, timeout=self._connect_timeout
            )
        return HostnameEndpoint(
            self._reactor,
            server.encode("idna"),
            self._port,
            timeout=self._connect_timeout,
        )

    def send(
        self,
        server: str,
        method: bytes,
        target: bytes,
        headers: Headers,
        body: IBodyProducer | None,
    ) -> defer.Deferred[IResponse]:
        """Send one request; fires with the response once its headers arrived.

        Fails with :class:`GatewayTimeout` when no response arrives within the
        response timeout (the request is then abandoned and its connection
        closed), or with Twisted's connection errors.
        """
        host = server.lower().encode("idna")
        key = (b"http", host, self._port)
        uri = URI(b"http", host + b":%d" % self._port, host, self._port, target, b"", b"", b"")
        d = self._requestWithEndpoint(
            key, self.endpoint_for(server), method, uri, headers, body, target
        )
        timed_out: list[bool] = []

        def on_timeout(result: Any, timeout: float) -> Any:
            timed_out.append(True)
            return result

        def translate(f: Failure) -> Failure:
            # Cancelling on timeout fails the request with whatever the
            # cancelled stage raises (CancelledError, ResponseNeverReceived).
            if timed_out:
                return Failure(
                    GatewayTimeout(
                        detail=f"{server}: no response in {self._response_timeout}s"
                        f" ({f.getErrorMessage()})"
                    )
                )
            return f

        d.addTimeout(self._response_timeout, self._reactor, onTimeoutCancel=on_timeout)
        d.addErrback(translate)
        return d


class RequestBody:
    """The client's request body, replayable (for a retry after a referral).

    Twisted's request has already read the body into ``content`` (memory or
    a temporary file).  Small bodies are written at once; large ones are
    streamed by a cooperator on the injected reactor.
    """

    SMALL = 64 * 1024

    def __init__(self, content: IO[bytes], reactor: Any) -> None:
        self._content = content
        self._reactor = reactor
        content.seek(0, io.SEEK_END)
        self.length = content.tell()
        content.seek(0)

    def producer(self) -> IBodyProducer | None:
        """A fresh producer of the whole body, or None when there is none."""
        if self.length == 0:
            return None
        self._content.seek(0)
        if self.length <= self.SMALL:
            return _BytesProducer(self._content.read())
        cooperator = Cooperator(scheduler=lambda f: self._reactor.callLater(0, f))
        return FileBodyProducer(self._content, cooperator=cooperator)


@implementer(IBodyProducer)
class _BytesProducer:
    def __init__(self, data: bytes) -> None:
        self._data = data
        self.length = len(data)

    def startProducing(self, consumer: IConsumer) -> defer.Deferred[None]:
        consumer.write(self._data)
        return defer.succeed(None)

    def pauseProducing(self) -> None:
        pass

    def resumeProducing(self) -> None:
        pass

    def stopProducing(self) -> None:
        pass


@implementer(IPushProducer)
class ResponseRelay(Protocol):
    """Streams a back-end response body to the client's request.

    Registered as the request's producer: when the client's transport is
    full, the back-end connection stops being read.  ``on_done`` is told the
    number of body bytes relayed and whether the body was complete.  A back
    end that sends nothing for ``idle_timeout`` seconds while the client is
    ready for more is cut off (the client sees a truncated body).
    """

    transport: Any = None  # the response's TransportProxyProducer

    def __init__(
        self,
        request: Any,
        on_done: Callable[[int, bool], None],
        clock: Any = None,
        idle_timeout: float | None = None,
    ) -> None:
        self._request = request
        self._on_done = on_done
        self._clock = clock
        self._idle_timeout = idle_timeout
        self._idle: Any = None
        self.sent = 0
        self._finished = False

    def start(self, response: IResponse) -> None:
        self._expected = response.length
        response.deliverBody(self)

    def _watch(self) -> None:
        self._unwatch()
        if self._clock is not None and self._idle_timeout is not None and not self._finished:
            self._idle = self._clock.callLater(self._idle_timeout, self._stalled)

    def _unwatch(self) -> None:
        if self._idle is not None and self._idle.active():
            self._idle.cancel()
        self._idle = None

    def _stalled(self) -> None:
        self._idle = None
        log.warn("back end sent nothing for {t}s mid-body: cutting it off", t=self._idle_timeout)
        if self.transport is not None:
            self.transport.stopProducing()

    def connectionMade(self) -> None:
        self._request.registerProducer(self, True)
        self._watch()

    def dataReceived(self, data: bytes) -> None:
        if self._finished:
            return
        self.sent += len(data)
        self._watch()
        self._request.write(data)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self._unwatch()
        if self._finished:
            return
        self._finished = True
        self._request.unregisterProducer()
        complete = reason.check(ResponseDone) is not None or (
            reason.check(PotentialDataLoss) is not None and self._expected is UNKNOWN_LENGTH
        )
        self._on_done(self.sent, complete)
        if complete:
            self._request.finish()
        else:
            # Never let a cut body look complete: close the client connection
            # (after what was relayed) instead of finishing the response, so
            # the client sees a body short of its Content-Length or chunked
            # framing without its last chunk.
            log.warn(
                "back-end response cut after {sent} bytes: {reason}",
                sent=self.sent,
                reason=reason.getErrorMessage(),
            )
            transport = getattr(self._request, "transport", None)
            if transport is not None:
                transport.loseConnection()

    def client_gone(self) -> None:
        """The client went away: close the back-end connection."""
        self._unwatch()
        if not self._finished:
            self._finished = True
            if self.transport is not None:
                self.transport.stopProducing()
            self._on_done(self.sent, False)

    # IPushProducer, driven by the client's transport
    def pauseProducing(self) -> None:
        self._unwatch()  # a slow client is not the back end's fault
        if self.transport is not None:
            self.transport.pauseProducing()

    def resumeProducing(self) -> None:
        self._watch()
        if self.transport is not None:
            self.transport.resumeProducing()

    def stopProducing(self) -> None:
        self.client_gone()
