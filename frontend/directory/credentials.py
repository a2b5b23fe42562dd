"""Basic authentication, checked by binding to the directory as the user.

The password is kept as the octets the client sent and reaches the directory
unchanged (no decoding, no SASLprep, no other normalisation): the directory
compares octets.  The login is text (UTF-8, else Latin-1), as it goes into
a search filter.

A successful check is remembered for ``ttl`` seconds as a keyed BLAKE2b
digest of (login, password) under a random per-process key: the password is
never kept in the clear, and a wrong password never matches a cached entry.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import os
import re
from hashlib import blake2b

from cachetools import TTLCache
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from frontend.directory.interfaces import PasswordCheck, UserEntry
from frontend.directory.lookups import Lookups
from frontend.errors import AuthenticationRequired, BadRequest

__all__ = ["Authenticator", "parse_basic"]

log = Logger()

_CONTROL = re.compile(r"[\x00-\x1f]")


def parse_basic(header: bytes | None) -> tuple[str, bytes]:
    """(login, password) from an ``Authorization: Basic`` value.

    The login is decoded as UTF-8, or as Latin-1 when it is not UTF-8; the
    password is returned as the octets sent, whatever their encoding.

    Raises :class:`AuthenticationRequired` when there are no Basic
    credentials, :class:`BadRequest` when they are malformed.
    """
    if header is None:
        raise AuthenticationRequired()
    scheme, _, rest = header.strip().partition(b" ")
    if scheme.lower() != b"basic":
        raise AuthenticationRequired("Basic authentication is required.")
    try:
        raw = base64.b64decode(rest.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise BadRequest("The Basic credentials are not valid base64.") from None
    user, sep, password = raw.partition(b":")
    if not sep:
        raise BadRequest("The Basic credentials lack a colon.")
    try:
        login = user.decode("utf-8")
    except UnicodeDecodeError:
        login = user.decode("latin-1")
    if _CONTROL.search(login):
        raise BadRequest("The user name holds control characters.")
    return login, password


class Authenticator:
    """Checks credentials against the directory, remembering successes."""

    def __init__(
        self,
        directory: PasswordCheck,
        lookups: Lookups,
        clock: IReactorTime,
        *,
        ttl: float,
        maxsize: int,
    ) -> None:
        self._directory = directory
        self._lookups = lookups
        self._key = os.urandom(32)
        self._verified: TTLCache[str, bytes] = TTLCache(
            maxsize=maxsize, ttl=ttl, timer=clock.seconds
        )

    def _digest(self, login: str, password: bytes) -> bytes:
        # The login holds no NUL (control characters are refused): unambiguous.
        h = blake2b(key=self._key, digest_size=32)
        h.update(login.encode("utf-8") + b"\0" + password)
        return h.digest()

    async def authenticate(self, header: bytes | None) -> UserEntry:
        """The user entry for valid credentials; else :class:`AuthenticationRequired`."""
        login, password = parse_basic(header)
        if not login or not password:
            # An empty password would be an anonymous bind that succeeds on AD.
            raise AuthenticationRequired("A user name and password are required.")
        key = login.lower()
        user = await self._lookups.user.get(key)
        if user is None:
            log.info("authentication failed: no user {login!r}", login=login)
            raise AuthenticationRequired("The user name or password is incorrect.")
        digest = self._digest(key, password)
        known = self._verified.get(key)
        if known is not None and hmac.compare_digest(known, digest):
            return user
        if not await self._directory.check_password(user.dn, password):
            log.info("authentication failed: wrong password for {login!r}", login=login)
            raise AuthenticationRequired("The user name or password is incorrect.")
        self._verified[key] = digest
        return user

    def clear(self) -> None:
        self._verified.clear()
