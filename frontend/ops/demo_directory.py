"""An embedded LDAP server for ``feproxy demo``: no system package needed.

It serves an LDIF file (``conf/directory.ldif``) from ldaptor's in-memory
directory over real LDAP on a loopback port, on the injected reactor.  The
front end talks to it exactly as to Active Directory or slapd, through
:class:`frontend.directory.LdapDirectory` (ldap3 over a socket).

ldaptor is a demo directory, not a directory of record: it has no schema (so
every attribute matches case-insensitively as a plain string), no access
control, no size limits, and it compares DNs case-sensitively, so a DN in an
attribute value must be spelt exactly as the entry's own DN (the shipped
LDIF does so).  Its ``userPassword`` values are compared in clear text (or
``{SSHA}``).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.endpoints import TCP4ServerEndpoint
from twisted.internet.interfaces import IListeningPort, IReactorTCP
from twisted.internet.protocol import ServerFactory, connectionDone
from twisted.python import components
from twisted.python.failure import Failure

from frontend.config.directory import DirectorySettings

with warnings.catch_warnings():
    # ldaptor 21.2 builds its filter grammar with pyparsing 2 names that
    # pyparsing 3 deprecates, and imports passlib, which imports the
    # deprecated ``crypt`` module.  Both warn once, at import time only;
    # under warnings-as-errors the import itself would fail.
    warnings.filterwarnings(
        "ignore",
        category=DeprecationWarning,
        module=r"(ldaptor|passlib)(\..*)?$",
    )
    from ldaptor import inmemory, interfaces
    from ldaptor.protocols.ldap.ldapserver import LDAPServer

__all__ = [
    "DEMO_BIND_DN",
    "DEMO_BIND_PASSWORD",
    "DEMO_NETBIOS_DOMAIN",
    "DemoDirectory",
    "start_demo_directory",
]

#: The service account of conf/directory.ldif.
DEMO_BIND_DN = "cn=feproxy,cn=Users,dc=example,dc=com"
DEMO_BIND_PASSWORD = "feproxy-service"  # noqa: S105 - the demo LDIF's, documented in README
DEMO_NETBIOS_DOMAIN = "EXAMPLE"


class _TrackingLDAPServer(LDAPServer):  # type: ignore[misc]
    """ldaptor's LDAP server protocol, known to its factory while connected."""

    factory: _DirectoryFactory

    def connectionMade(self) -> None:
        self.factory.connections.add(self)
        super().connectionMade()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.factory.connections.discard(self)
        super().connectionLost(reason)


class _DirectoryFactory(ServerFactory):
    """Serves one in-memory directory tree (adapted to IConnectedLDAPEntry)."""

    protocol = _TrackingLDAPServer

    def __init__(self, root: Any) -> None:  # noqa: ANN401 - ldaptor's entry: ldaptor has no types
        self.root = root
        self.connections: set[_TrackingLDAPServer] = set()


components.registerAdapter(
    lambda factory: factory.root, _DirectoryFactory, interfaces.IConnectedLDAPEntry
)


@dataclass
class DemoDirectory:
    """A running demo directory: where it listens and how to stop it."""

    host: str
    port: int
    base_dn: str
    _listening: IListeningPort = field(repr=False)
    _factory: _DirectoryFactory = field(repr=False)

    @property
    def url(self) -> str:
        return f"ldap://{self.host}:{self.port}"

    def settings(
        self,
        config_dn: str | None = None,
        *,
        bind_dn: str = DEMO_BIND_DN,
        bind_password: str = DEMO_BIND_PASSWORD,
        netbios_domain: str | None = DEMO_NETBIOS_DOMAIN,
    ) -> DirectorySettings:
        """DirectorySettings that reach this directory as the service account.

        ``config_dn`` defaults to the base DN, as the front end's config does.
        """
        return DirectorySettings(
            url=self.url,
            bind_dn=bind_dn,
            bind_password=bind_password,
            base_dn=self.base_dn,
            config_dn=config_dn or self.base_dn,
            netbios_domain=netbios_domain,
        )

    def stop(self) -> Deferred[None]:
        """Stop listening and drop the open connections."""
        for protocol in list(self._factory.connections):
            if protocol.transport is not None:
                protocol.transport.abortConnection()
        d: Deferred[object] = maybeDeferred(self._listening.stopListening)
        return d.addCallback(lambda _: None)


def start_demo_directory(
    reactor: IReactorTCP,
    ldif_path: str | Path,
    port: int = 0,
    interface: str = "127.0.0.1",
) -> Deferred[DemoDirectory]:
    """Load ``ldif_path`` into memory and serve it over LDAP.

    ``port`` 0 picks a free port (see ``DemoDirectory.port``).  The file is
    small and read once at start-up.
    """
    with Path(ldif_path).open("rb") as ldif:
        loaded: Deferred[Any] = inmemory.fromLDIFFile(ldif)

    def listen(root: Any) -> Deferred[DemoDirectory]:  # noqa: ANN401 - ldaptor has no types
        factory = _DirectoryFactory(root)
        endpoint = TCP4ServerEndpoint(reactor, port, interface=interface)
        listening: Deferred[IListeningPort] = endpoint.listen(factory)

        def started(listener: IListeningPort) -> DemoDirectory:
            address = listener.getHost()
            if not isinstance(address, IPv4Address):  # a TCP4ServerEndpoint's port
                raise TypeError(f"expected an IPv4 address, got {address!r}")
            return DemoDirectory(
                host=interface,
                port=address.port,
                base_dn=root.dn.getText(),
                _listening=listener,
                _factory=factory,
            )

        return listening.addCallback(started)

    return loaded.addCallback(listen)
