"""Listeners from endpoint strings; TLS ones with certificates reloadable on SIGHUP.

Any Twisted server endpoint string works (``tcp:80``, ``unix:/run/fe.sock``).
``ssl:PORT:privateKey=KEY:certKey=CERT[:extraCertChain=CHAIN][:interface=ADDR]``
is built here rather than by Twisted's parser so that its certificate and key
can be read again on reload without closing the listening socket: new
connections get the new certificate, established ones keep theirs.  TLS 1.2
is the minimum and the cipher list is Twisted's (no RC4, 3DES or export
suites; forward secrecy first).
"""

from __future__ import annotations

import re
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from OpenSSL import SSL
from twisted.application.service import IService, Service
from twisted.internet import ssl
from twisted.internet.defer import Deferred, succeed
from twisted.internet.endpoints import (
    AdoptedStreamServerEndpoint,
    TCP4ServerEndpoint,
    TCP6ServerEndpoint,
    serverFromString,
)
from twisted.internet.interfaces import (
    IListeningPort,
    IOpenSSLContextFactory,
    IProtocolFactory,
    IStreamServerEndpoint,
)
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.python.failure import Failure
from zope.interface import implementer

if TYPE_CHECKING:
    from frontend.ops.reactor import IServeReactor

__all__ = [
    "DEFAULT_BACKLOG",
    "Listener",
    "ListeningService",
    "ReloadableTLS",
    "make_listener",
    "parse_endpoint",
    "with_backlog",
]

#: The listen queue of a listener whose endpoint string sets no ``backlog``.
#: Twisted's default (50) drops the SYNs of a burst of new connections (a
#: balancer's failover, the morning logon peak); the kernel caps this at
#: ``net.core.somaxconn`` (4096 on current kernels), as it does for nginx
#: (511) and HAProxy (its maxconn).
DEFAULT_BACKLOG = 4096
_WITH_BACKLOG = ("tcp", "tcp6", "ssl", "unix")

_PEM_CERT = re.compile(rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", re.DOTALL)


def with_backlog(desc: str) -> str:
    """``desc`` with ``backlog=DEFAULT_BACKLOG`` unless it sets one (or takes none)."""
    kind, _, kw = parse_endpoint(desc)
    if kind in _WITH_BACKLOG and "backlog" not in kw:
        return f"{desc}:backlog={DEFAULT_BACKLOG}"
    return desc


def parse_endpoint(desc: str) -> tuple[str, list[str], dict[str, str]]:
    """Split ``kind:a:b:k=v`` as Twisted does (``\\:`` escapes a colon)."""
    parts: list[str] = []
    current: list[str] = []
    chars = iter(desc)
    for c in chars:
        if c == "\\":
            current.append(next(chars, ""))
        elif c == ":":
            parts.append("".join(current))
            current = []
        else:
            current.append(c)
    parts.append("".join(current))
    kind, rest = parts[0].lower(), parts[1:]
    args = [p for p in rest if "=" not in p]
    kwargs = dict(p.split("=", 1) for p in rest if "=" in p)
    return kind, args, kwargs


@implementer(IOpenSSLContextFactory)
class ReloadableTLS:
    """The server TLS context, from PEM files that :meth:`reload` reads again."""

    def __init__(self, private_key: str, certificate: str, chain: str | None = None) -> None:
        self.paths = (private_key, certificate, chain)
        self._options = self._load()

    def _load(self) -> ssl.CertificateOptions:
        key_path, cert_path, chain_path = self.paths
        pem = Path(cert_path).read_bytes() + b"\n" + Path(key_path).read_bytes()
        pair = ssl.PrivateCertificate.loadPEM(pem)
        chain = None
        if chain_path is not None:
            found = _PEM_CERT.findall(Path(chain_path).read_bytes())
            if not found:
                raise ValueError(f"{chain_path} holds no PEM certificate")
            chain = [ssl.Certificate.loadPEM(c).original for c in found]
        options = ssl.CertificateOptions(
            privateKey=pair.privateKey.original,
            certificate=pair.original,
            extraCertChain=chain,
            raiseMinimumTo=ssl.TLSVersion.TLSv1_2,
        )
        options.getContext()  # fails now, not at the first client, on a bad pair
        return options

    def reload(self) -> None:
        """Read the files again; on any error the old certificate stays."""
        self._options = self._load()

    def getContext(self) -> SSL.Context:
        return self._options.getContext()


@dataclass
class Listener:
    desc: str
    service: IService
    tls: ReloadableTLS | None = None


class ListeningService(Service):
    """Listens on an endpoint while running; a listen that fails at once (a
    port in use) raises from :meth:`startService`, so start-up fails loudly.

    (Twisted's ``StreamServerEndpointService`` does this only through a
    private attribute.)
    """

    def __init__(self, endpoint: IStreamServerEndpoint, factory: IProtocolFactory) -> None:
        self.endpoint = endpoint
        self.factory = factory
        self._port: IListeningPort | None = None
        self._listening: Deferred[IListeningPort] | None = None

    def startService(self) -> None:
        Service.startService(self)
        failed: list[Failure] = []
        self._listening = self.endpoint.listen(self.factory)
        self._listening.addCallbacks(self._listened, failed.append)
        if failed:
            self._listening = None
            Service.stopService(self)
            failed[0].raiseException()

    def _listened(self, port: IListeningPort) -> IListeningPort:
        self._port = port
        return port

    def stopService(self) -> Deferred[None]:
        Service.stopService(self)
        port, self._port = self._port, None
        listening, self._listening = self._listening, None
        if port is not None:
            stopped = port.stopListening()
            return stopped if stopped is not None else succeed(None)
        if listening is not None:
            listening.cancel()
        return succeed(None)


def make_listener(
    desc: str, factory: IProtocolFactory, reactor: IServeReactor, fd: int | None = None
) -> Listener:
    """A listening service for ``desc`` serving ``factory``.

    With ``fd``, the listening socket is that inherited one (``--workers``)
    instead of a new one.
    """
    kind, args, kw = parse_endpoint(desc)
    endpoint: IStreamServerEndpoint
    if fd is not None:
        probe = socket.socket(fileno=fd)
        family = probe.family
        probe.detach()
        endpoint = AdoptedStreamServerEndpoint(reactor, fd, family)
        if kind != "ssl":
            return Listener(desc, ListeningService(endpoint, factory))
    elif kind != "ssl":
        endpoint = serverFromString(reactor, with_backlog(desc))
        return Listener(desc, ListeningService(endpoint, factory))
    else:
        interface = kw.get("interface", "")
        endpoint_type = TCP6ServerEndpoint if ":" in interface else TCP4ServerEndpoint
        endpoint = endpoint_type(
            reactor,
            int(args[0] if args else kw["port"]),
            backlog=int(kw.get("backlog", DEFAULT_BACKLOG)),
            interface=interface or ("::" if endpoint_type is TCP6ServerEndpoint else ""),
        )
    tls = ReloadableTLS(
        kw["privateKey"], kw.get("certKey", kw["privateKey"]), kw.get("extraCertChain")
    )
    service = ListeningService(
        endpoint, TLSMemoryBIOFactory(tls, isClient=False, wrappedFactory=factory)
    )
    return Listener(desc, service, tls)
