"""A user's simple bind: the password's octets sent unchanged, and what the
directory's answer means for the client.

ldap3 applies SASLprep (RFC 4013) to a simple-bind password given as text:
it maps some characters (a no-break space to a space, a soft hyphen to
nothing), normalises to NFKC, and refuses others before anything is sent
(control characters, private-use characters, Latin mixed with Hebrew...).
A password given as bytes is sent as it is
(``ldap3.protocol.sasl.sasl.validate_simple_password``): the front end
passes the client's octets, wrapped in :func:`octets`, and the directory
compares them with what it holds.

A bind ends in one of three ways (:func:`simple_bind`):

- accepted: the credentials are right;
- refused: the directory answered one of :data:`REFUSED_RESULTS`, or ldap3
  refused the credentials before sending them (:data:`REFUSED_ERRORS`):
  the client's 401;
- anything else raises: the directory failed or cannot be used (unreachable,
  busy, a protocol error, a policy that refuses every simple bind, a
  referral), the client's 503.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import TYPE_CHECKING

with warnings.catch_warnings():
    # ldap3 2.9.1 imports tagMap and typeMap from pyasn1's BER encoder, which
    # pyasn1 >= 0.6.1 deprecates; the warning comes once, at import time,
    # and under warnings-as-errors (the test suite) the import would fail.
    warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"ldap3(\..*)?$")
    from ldap3.core.exceptions import (
        LDAPBindError,
        LDAPInvalidDnError,
        LDAPOperationResult,
        LDAPPasswordIsMandatoryError,
        LDAPSASLPrepError,
        LDAPUserNameIsMandatoryError,
    )

if TYPE_CHECKING:
    from ldap3 import Connection

__all__ = ["REFUSED_ERRORS", "REFUSED_RESULTS", "octets", "simple_bind"]

#: Bind results (RFC 4511 result codes) that refuse these credentials.
REFUSED_RESULTS: Mapping[int, str] = {
    # Some servers answer it for a DN that no longer exists (slapd: 49).
    32: "noSuchObject",
    34: "invalidDNSyntax",
    # The entry cannot bind with a password (it has none, or not of this kind).
    48: "inappropriateAuthentication",
    # A wrong password; on AD also a locked, disabled or expired account (the
    # data code of its message says which).
    49: "invalidCredentials",
    # An empty or odd password where the server takes none (slapd's
    # "unauthenticated bind (DN with no password) disallowed").
    53: "unwillingToPerform",
}

#: ldap3's refusals of the credentials themselves, raised before anything is
#: sent.  With the password passed as bytes, SASLprep never runs; it is here
#: so that a password ldap3 would not send is a refused one, never a failure.
REFUSED_ERRORS = (
    LDAPPasswordIsMandatoryError,
    LDAPUserNameIsMandatoryError,
    LDAPSASLPrepError,
    LDAPInvalidDnError,
)


class _Octets(bytes):
    """A password's octets as ldap3 takes them: sent unchanged, no SASLprep.

    ldap3 keeps a decoded copy of every request it sends (its
    ``Connection.request``, which nothing here reads) and decodes simple
    credentials as UTF-8 for it, which failed, before anything was sent, on
    octets that are not UTF-8.  pyasn1 keeps this object as the
    credentials' value, so that copy decodes it leniently; what goes on the
    wire is ``bytes(self)``, unchanged (tests/test_passwords.py binds with
    Latin-1 octets).
    """

    __slots__ = ()

    def decode(self, encoding: str = "utf-8", errors: str = "strict") -> str:  # noqa: ARG002 - always lenient: the text is ldap3's record, never sent
        return bytes(self).decode(encoding, "replace")


def octets(password: bytes) -> bytes:
    """``password`` as the ``password`` of an ldap3 Connection: sent as is."""
    return _Octets(password)


def simple_bind(conn: Connection) -> str | None:
    """Bind ``conn`` (made with ``raise_exceptions=True``).

    Returns None when the directory accepted the credentials, or why they
    were refused (for a debug log line: the result's name and the server's
    message, never the password).  Raises what ldap3 raises for every other
    outcome, and :class:`LDAPBindError` for a refusal ldap3 does not raise
    (a referral): none of them is about the credentials.
    """
    try:
        if conn.bind():
            return None
    except LDAPOperationResult as error:
        name = REFUSED_RESULTS.get(error.result)
        if name is None:
            raise
        return f"{name} ({error.message})" if error.message else name
    except REFUSED_ERRORS as error:
        return f"not sent: {error}"
    raise LDAPBindError(f"bind answered {conn.result!r}")
