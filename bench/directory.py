"""A throwaway slapd for the benchmark, logging every operation.

The :class:`~frontend.loadtest.slapd.Slapd` harness of the load test, with
slapd run at ``-d stats``: one log line per operation, so LDAP traffic is
counted at the server, independently of the front end.  The benchmark starts
it itself (pinned to a core, see ``bench/stack.py``).  The directory is
conf/directory.ldif plus generated benchmark users (``bench0001``, password
``bench0001-pw``, ...).
"""

from __future__ import annotations

import base64
import re
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from frontend.loadtest.slapd import BASE_DN, CONFIG_DN, SERVICE_DN, SERVICE_PASSWORD, Slapd

__all__ = [
    "BASE_DN",
    "CONFIG_DN",
    "SERVICE_DN",
    "SERVICE_PASSWORD",
    "BenchUser",
    "OpCount",
    "bench_users",
    "count_ops",
    "prepare_slapd",
]

_STORES = (
    "cn=MB1,cn=InformationStore,cn=EX1,cn=Servers,cn=Exchange," + CONFIG_DN,
    "cn=MB2,cn=InformationStore,cn=EX2,cn=Servers,cn=Exchange," + CONFIG_DN,
)


@dataclass(frozen=True)
class BenchUser:
    """A generated user: login and password for Basic authentication."""

    login: str
    password: str

    @property
    def authorization(self) -> str:
        """The ``Authorization`` header value."""
        pair = f"{self.login}:{self.password}".encode()
        return "Basic " + base64.b64encode(pair).decode("ascii")


def bench_users(count: int, prefix: str = "bench") -> list[BenchUser]:
    """``count`` users named ``<prefix>0001``...; password ``<login>-pw``."""
    return [BenchUser(f"{prefix}{i:04d}", f"{prefix}{i:04d}-pw") for i in range(1, count + 1)]


def _user_ldif(user: BenchUser, index: int) -> str:
    guid = uuid.uuid5(uuid.NAMESPACE_URL, f"feproxy:bench:{user.login}").bytes_le
    return (
        f"dn: cn={user.login},cn=Users,{BASE_DN}\n"
        "objectClass: top\n"
        "objectClass: person\n"
        "objectClass: organizationalPerson\n"
        "objectClass: inetOrgPerson\n"
        "objectClass: user\n"
        f"cn: {user.login}\n"
        f"sn: {user.login}\n"
        f"sAMAccountName: {user.login}\n"
        f"userPrincipalName: {user.login}@example.com\n"
        f"userPassword: {user.password}\n"
        f"homeMDB: {_STORES[index % len(_STORES)]}\n"
        f"proxyAddresses: SMTP:{user.login}@example.com\n"
        f"objectGUID:: {base64.b64encode(guid).decode('ascii')}\n"
    )


def prepare_slapd(workdir: Path, users: list[BenchUser], port: int) -> Slapd:
    """slapd for 127.0.0.1:``port`` with the LDIF and ``users`` loaded, not started:
    run its :meth:`~frontend.loadtest.slapd.Slapd.command` (one log line per operation)."""
    users_ldif = "\n".join(_user_ldif(u, i) for i, u in enumerate(users))
    slapd = Slapd(workdir, users_ldif, port, debug="stats")
    slapd.load()
    return slapd


# conn=1001 op=2 SRCH base="dc=example,dc=com" scope=2 deref=0 filter="(...)"
# slapd logs some operations on two lines (SRCH: base and filter, then attr;
# BIND: dn and method, then mech): an operation counts once, by its first line.
_OP = re.compile(
    rb"conn=(\d+) op=(\d+) (BIND|SRCH|CMP|MOD|ADD|DEL|MODRDN|EXT|UNBIND|ABANDON)\b(.*)"
)

_SCHEMA = re.compile(rb'base="(cn=subschema)?" scope=0')


@dataclass(frozen=True)
class OpCount:
    """LDAP operations seen in a slice of slapd's log.

    ``schema_reads`` are the SRCH of the root DSE and of cn=Subschema that a
    client library makes to learn the server's schema (ldap3 does on every
    bind of a connection made with ``get_info`` other than NONE); they are
    in ``by_kind`` too.  ``background`` are the directory watcher's polls (a subtree search for
    ``(objectClass=*)`` under the configuration container, each page one
    SRCH): they run on a timer, whatever the traffic, so they are not
    counted against requests.
    """

    by_kind: dict[str, int]
    background: int
    schema_reads: int = 0

    @property
    def binds(self) -> int:
        return self.by_kind.get("BIND", 0)

    @property
    def searches(self) -> int:
        return self.by_kind.get("SRCH", 0)

    @property
    def per_request_ops(self) -> int:
        """Operations a request can cause: binds, searches and compares."""
        return self.binds + self.searches + self.by_kind.get("CMP", 0)


def count_ops(log: bytes) -> OpCount:
    """Count the operations in ``log`` (a slice of slapd's ``-d stats`` output)."""
    kinds: Counter[str] = Counter()
    background = schema = 0
    seen: set[tuple[bytes, bytes]] = set()
    watcher = f'base="{CONFIG_DN}" scope=2'.lower().encode()
    for line in log.splitlines():
        match = _OP.search(line)
        if match is None or (match.group(1), match.group(2)) in seen:
            continue
        seen.add((match.group(1), match.group(2)))
        kind, rest = match.group(3).decode(), match.group(4).lower()
        if kind == "SRCH" and watcher in rest and b'filter="(objectclass=*)"' in rest:
            background += 1
            continue
        if kind == "SRCH" and _SCHEMA.search(rest):
            schema += 1
        kinds[kind] += 1
    return OpCount(dict(kinds), background, schema)
