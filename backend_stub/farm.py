"""The whole stub farm: every server of a topology plus the control API."""

from __future__ import annotations

from twisted.internet.defer import DeferredList, ensureDeferred
from twisted.internet.endpoints import TCP4ServerEndpoint, TCP6ServerEndpoint
from twisted.internet.interfaces import IListeningPort, IStreamServerEndpoint
from twisted.web.server import Site

from backend_stub.control import ControlResource
from backend_stub.records import RequestLog
from backend_stub.server import StubReactor, StubServer
from backend_stub.topology import Topology

__all__ = ["StubFarm"]


class StubFarm:
    """Builds the servers of *topology* on *reactor* and starts them."""

    def __init__(self, topology: Topology, reactor: StubReactor) -> None:
        self.topology = topology
        self.records = RequestLog()
        self._reactor = reactor
        self.servers: dict[str, StubServer] = {
            spec.name: StubServer(spec, topology.folders, topology.port, self.records, reactor)
            for spec in topology.servers
        }
        self._control: IListeningPort | None = None  # the control API's listener

    async def start(self) -> None:
        """Listen on every server address and on the control address.

        Raises ``CannotListenError`` for the first listener that failed; the
        listeners already open are then closed again.
        """
        try:
            for server in self.servers.values():
                await server.start()
            control_site = Site(ControlResource(self.servers, self.records), reactor=self._reactor)
            host = self.topology.control_host
            endpoint_type = TCP6ServerEndpoint if ":" in host else TCP4ServerEndpoint
            endpoint: IStreamServerEndpoint = endpoint_type(
                self._reactor, self.topology.control_port, interface=host
            )
            self._control = await endpoint.listen(control_site)
        except Exception:
            await self.stop()
            raise

    async def stop(self) -> None:
        """Close every listener and connection."""
        stops = [server.stop() for server in self.servers.values()]
        if self._control is not None:
            control, self._control = self._control, None
            stops.append(ensureDeferred(_stop_listening(control)))
        await DeferredList(stops, consumeErrors=True)


async def _stop_listening(port: IListeningPort) -> None:
    result = port.stopListening()
    if result is not None:
        await result
