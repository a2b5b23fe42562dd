"""The generated directory of a live load test: users, servers, one tree.

The LDIF follows ``conf/directory.ldif`` (Active Directory attribute names,
``conf/schema/exchange.schema``) under the same suffix and service account,
and loads into slapd (slapadd) and into ldaptor's in-memory directory alike:
no ``version:`` line, parents before children, base64 for binary values, a
blank line after each entry.

    dc=example,dc=com
      cn=Users                      the service account and lt00001.. users
      cn=Configuration
        cn=Exchange
          cn=Folder Hierarchies
            cn=Apps                 msExchPFTreeType 0 (general purpose)
          cn=Servers
            cn=PF01                 pf01.example.com
              cn=InformationStore
                cn=APPS             public store of Apps (replicas only)
            ...

Users have a seeded random ``objectGUID`` (the token the front end hashes),
``sAMAccountName`` ``lt00001`` and password ``lt00001-pw``; they need no
mailbox to reach a general-purpose tree.
"""

from __future__ import annotations

import base64
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final

from frontend.loadtest.slapd import BASE_DN, CONFIG_DN, SERVICE_DN, SERVICE_PASSWORD

__all__ = [
    "TREE",
    "GeneratedUser",
    "directory_ldif",
    "generate_users",
    "server_dn",
    "store_attributes",
    "store_dn",
]

#: The general-purpose folder tree the load test uses.
TREE: Final = "Apps"

_EXCHANGE: Final = f"cn=Exchange,{CONFIG_DN}"
_SERVERS: Final = f"cn=Servers,{_EXCHANGE}"
_HIERARCHIES: Final = f"cn=Folder Hierarchies,{_EXCHANGE}"
_TREE_DN: Final = f"cn={TREE},{_HIERARCHIES}"
_USERS: Final = f"cn=Users,{BASE_DN}"
_PERSON: Final = ("top", "person", "organizationalPerson", "inetOrgPerson", "user")


@dataclass(frozen=True)
class GeneratedUser:
    """One generated user: login, password and token (objectGUID)."""

    login: str
    password: str
    token: bytes

    @property
    def dn(self) -> str:
        return f"cn={self.login},{_USERS}"


def generate_users(count: int, seed: int) -> list[GeneratedUser]:
    """``count`` users ``lt00001``.. with seeded random 16-byte tokens."""
    rng = random.Random(seed)  # noqa: S311 - reproducible synthetic tokens, not secrets
    width = max(5, len(str(count)))
    users = []
    for i in range(1, count + 1):
        login = f"lt{i:0{width}d}"
        users.append(GeneratedUser(login, f"{login}-pw", rng.randbytes(16)))
    return users


def _short(host: str) -> str:
    return host.split(".", 1)[0].upper()


def server_dn(host: str) -> str:
    """The DN of the server entry of ``host`` (``pf01.example.com`` -> ``cn=PF01,...``)."""
    return f"cn={_short(host)},{_SERVERS}"


def store_dn(host: str) -> str:
    """The DN of the public store of the tree on ``host``."""
    return f"cn=APPS,cn=InformationStore,{server_dn(host)}"


def store_attributes(host: str) -> dict[str, list[str]]:
    """The attributes of the public store of the tree on ``host``."""
    return {
        "objectClass": ["top", "msExchPublicMDB"],
        "cn": ["APPS"],
        "msExchOwningServer": [server_dn(host)],
        "msExchOwningPFTree": [_TREE_DN],
    }


def _entry(dn: str, attributes: Iterable[tuple[str, str | bytes]]) -> str:
    lines = [f"dn: {dn}"]
    for name, value in attributes:
        if isinstance(value, bytes):
            lines.append(f"{name}:: {base64.b64encode(value).decode('ascii')}")
        else:
            lines.append(f"{name}: {value}")
    return "\n".join(lines) + "\n\n"


def _container(dn: str) -> str:
    cn = dn.split(",", 1)[0].removeprefix("cn=")
    return _entry(dn, [("objectClass", "top"), ("objectClass", "container"), ("cn", cn)])


def _structure() -> list[str]:
    return [
        _entry(BASE_DN, [("objectClass", "top"), ("objectClass", "domain"), ("dc", "example")]),
        _container(_USERS),
        _container(CONFIG_DN),
        _container(_EXCHANGE),
        _container(_SERVERS),
        _container(_HIERARCHIES),
        _entry(
            _TREE_DN,
            [
                ("objectClass", "top"),
                ("objectClass", "msExchPFTree"),
                ("cn", TREE),
                ("msExchPFTreeType", "0"),
            ],
        ),
        _entry(
            SERVICE_DN,
            [("objectClass", c) for c in _PERSON]
            + [("cn", "feproxy"), ("sn", "feproxy"), ("sAMAccountName", "feproxy")]
            + [("userPassword", SERVICE_PASSWORD)],
        ),
    ]


def _server(host: str, *, replica: bool) -> list[str]:
    entries = [
        _entry(
            server_dn(host),
            [
                ("objectClass", "top"),
                ("objectClass", "msExchExchangeServer"),
                ("cn", _short(host)),
                ("dNSHostName", host),
            ],
        ),
        _container(f"cn=InformationStore,{server_dn(host)}"),
    ]
    if replica:
        attributes = [(k, v) for k, values in store_attributes(host).items() for v in values]
        entries.append(_entry(store_dn(host), attributes))
    return entries


def _user(user: GeneratedUser) -> str:
    return _entry(
        user.dn,
        [("objectClass", c) for c in _PERSON]
        + [("cn", user.login), ("sn", user.login), ("sAMAccountName", user.login)]
        + [("userPrincipalName", f"{user.login}@example.com")]
        + [("userPassword", user.password), ("objectGUID", user.token)],
    )


def directory_ldif(
    users: Sequence[GeneratedUser], replicas: Sequence[str], spares: Sequence[str] = ()
) -> str:
    """The whole directory: ``replicas`` hold the tree, ``spares`` are servers without."""
    parts = _structure()
    for host in replicas:
        parts += _server(host, replica=True)
    for host in spares:
        parts += _server(host, replica=False)
    parts += [_user(user) for user in users]
    return "".join(parts)
