"""Extra users for conf/directory.ldif (``slapd_factory(extra_ldif=...)``):
``u0001``.. with password ``u0001-pw``, a seeded random objectGUID and a
mailbox on MB1 or MB2 in turn."""

from __future__ import annotations

import base64
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from frontend.loadtest.slapd import BASE_DN, CONFIG_DN

__all__ = ["MB1", "MB2", "PASSWORDS", "ExtraUser", "extra_users", "users_ldif"]

SERVERS: Final = f"cn=Servers,cn=Exchange,{CONFIG_DN}"
MB1: Final = f"cn=MB1,cn=InformationStore,cn=EX1,{SERVERS}"
MB2: Final = f"cn=MB2,cn=InformationStore,cn=EX2,{SERVERS}"

#: The passwords of conf/directory.ldif's accounts (carol's HTTP is disabled).
PASSWORDS: Final = {
    "alice": "alice-pw",
    "bob": "bob-pw",
    "carol": "carol-pw",
    "dave": "dave-pw",
    "jose": "jose-pw",
    "feproxy": "feproxy-service",
}


@dataclass(frozen=True)
class ExtraUser:
    """One generated user with a mailbox."""

    login: str
    password: str
    token: bytes
    home_mdb: str

    @property
    def dn(self) -> str:
        return f"cn={self.login},cn=Users,{BASE_DN}"


def extra_users(count: int, seed: int = 1, stores: Sequence[str] = (MB1, MB2)) -> list[ExtraUser]:
    """``count`` users whose mailboxes alternate over ``stores``."""
    rng = random.Random(seed)  # noqa: S311 - reproducible test tokens, not secrets
    return [
        ExtraUser(f"u{i:04d}", f"u{i:04d}-pw", rng.randbytes(16), stores[i % len(stores)])
        for i in range(1, count + 1)
    ]


def users_ldif(users: Sequence[ExtraUser]) -> str:
    """The users as LDIF entries (after conf/directory.ldif's)."""
    classes = ("top", "person", "organizationalPerson", "inetOrgPerson", "user")
    entries = []
    for u in users:
        lines = [f"dn: {u.dn}", *(f"objectClass: {c}" for c in classes)]
        lines += [f"cn: {u.login}", f"sn: {u.login}", f"sAMAccountName: {u.login}"]
        lines += [f"userPassword: {u.password}", f"proxyAddresses: SMTP:{u.login}@example.com"]
        lines += [f"homeMDB: {u.home_mdb}", f"objectGUID:: {base64.b64encode(u.token).decode()}"]
        entries.append("\n".join(lines) + "\n")
    return "\n".join(entries)
