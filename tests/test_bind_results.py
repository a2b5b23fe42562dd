"""What a directory's answer to a user's bind means: refused credentials (the
client's 401, logged below error level) or a directory failure (503, logged
as an error).

slapd cannot be made to answer ``busy`` or ``strongerAuthRequired`` on
demand, so the answers come from a directory double: ldaptor's LDAP server
protocol on loopback, answering every bind with a chosen result code, so
that ldap3 reads a real BindResponse off a socket.
"""

from __future__ import annotations

import warnings
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, cast

import pytest
import pytest_twisted
from twisted.internet.endpoints import TCP4ServerEndpoint
from twisted.internet.protocol import ServerFactory
from twisted.internet.threads import deferToThread
from twisted.logger import ILogObserver, LogLevel, globalLogPublisher

from frontend.config.directory import DirectorySettings
from frontend.directory.bind import simple_bind
from frontend.directory.ldap import LdapDirectory
from frontend.errors import DirectoryUnavailable
from frontend.ops.reactor import global_reactor

with warnings.catch_warnings():
    # ldaptor 21.2 warns at import time (pyparsing 3 names, passlib's crypt
    # import); under warnings-as-errors the import itself would fail.
    warnings.filterwarnings(
        "ignore", category=DeprecationWarning, module=r"(ldaptor|passlib)(\..*)?$"
    )
    from ldaptor.protocols import pureldap
    from ldaptor.protocols.ldap.ldapserver import LDAPServer

with warnings.catch_warnings():
    # ldap3 2.9.1 imports deprecated pyasn1 names at import time.
    warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"ldap3(\..*)?$")
    from ldap3 import NONE, SIMPLE, Connection, Server

reactor = global_reactor()

USER_DN = "cn=Alice Archer,cn=Users,dc=example,dc=com"


class AnsweringServer(LDAPServer):  # type: ignore[misc] # ldaptor has no types
    """ldaptor's LDAP server protocol, answering binds from its factory."""

    factory: BindAnswers

    def handle_LDAPBindRequest(  # noqa: N802 - ldaptor's handler name
        self,
        request: Any,  # noqa: ANN401 - ldaptor's request: ldaptor has no types
        controls: object,  # noqa: ARG002 - ldaptor's signature
        reply: object,  # noqa: ARG002 - ldaptor's signature
    ) -> object:
        self.factory.binds.append(bytes(request.dn))
        self.factory.passwords.append(bytes(request.auth))
        code = self.factory.code
        # (ldaptor sends no referral URLs: a referral is its result code alone.)
        return pureldap.LDAPBindResponse(resultCode=code, errorMessage=f"answer {code}")


class BindAnswers(ServerFactory):
    """Answers every bind with ``code``; records the DNs and passwords bound."""

    protocol = AnsweringServer

    def __init__(self) -> None:
        self.code = 0
        self.binds: list[bytes] = []
        self.passwords: list[bytes] = []


@dataclass
class Double:
    """The directory double, and a started LdapDirectory on it."""

    answers: BindAnswers
    directory: LdapDirectory
    url: str
    events: list[dict[str, Any]] = field(default_factory=list)

    def levels(self, text: str) -> list[LogLevel]:
        """The levels of the log events whose format holds ``text``."""
        return [e["log_level"] for e in self.events if text in e.get("log_format", "")]


@pytest_twisted.async_yield_fixture
async def double() -> AsyncIterator[Double]:
    answers = BindAnswers()
    listener = await TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(answers)
    url = f"ldap://127.0.0.1:{listener.getHost().port}"
    settings = DirectorySettings(
        url=url,
        bind_dn="cn=feproxy,cn=Users,dc=example,dc=com",
        bind_password="unused",  # user binds only: no service connection
        base_dn="dc=example,dc=com",
        config_dn="dc=example,dc=com",
        timeout=2.0,
    )
    directory = LdapDirectory(settings, reactor)
    directory.start()
    state = Double(answers, directory, url)
    observer = cast(ILogObserver, state.events.append)
    globalLogPublisher.addObserver(observer)
    try:
        yield state
    finally:
        globalLogPublisher.removeObserver(observer)
        await directory.stop()
        await listener.stopListening()


#: Bind answers about the credentials (written out here, not read from the code).
REFUSED = {
    32: "noSuchObject",
    34: "invalidDNSyntax",
    48: "inappropriateAuthentication",
    49: "invalidCredentials",
    53: "unwillingToPerform",
}


@pytest.mark.parametrize("code", sorted(REFUSED), ids=[REFUSED[c] for c in sorted(REFUSED)])
@pytest_twisted.ensureDeferred
async def test_bind_refusal_is_a_wrong_password_logged_at_debug(double: Double, code: int) -> None:
    """invalidCredentials, inappropriateAuthentication, unwillingToPerform, noSuchObject
    and invalidDNSyntax answer False (401), with a debug line and no error line."""
    double.answers.code = code
    assert await double.directory.check_password(USER_DN, b"p\xe4ss\x00word") is False
    assert double.answers.binds == [USER_DN.encode()]
    assert double.answers.passwords == [b"p\xe4ss\x00word"]  # the octets, not UTF-8
    assert double.levels("refused") == [LogLevel.debug]
    assert LogLevel.error not in [e["log_level"] for e in double.events]


FAILURES = {
    1: "operationsError",
    2: "protocolError",
    7: "authMethodNotSupported",
    8: "strongerAuthRequired",
    10: "referral",
    13: "confidentialityRequired",
    51: "busy",
    52: "unavailable",
    80: "other",
}


@pytest.mark.parametrize("code", sorted(FAILURES), ids=[FAILURES[c] for c in sorted(FAILURES)])
@pytest_twisted.ensureDeferred
async def test_other_bind_answer_is_a_directory_failure_logged_as_error(
    double: Double, code: int
) -> None:
    """Any other answer (busy, a policy refusing simple binds, a referral...) fails with
    DirectoryUnavailable (503), logged at error level."""
    double.answers.code = code
    with pytest.raises(DirectoryUnavailable) as caught:
        await double.directory.check_password(USER_DN, b"alice-pw")
    assert caught.value.status == 503
    assert double.levels("directory {what} failed") == [LogLevel.error]
    assert double.levels("refused") == []


@pytest.mark.parametrize(
    ("user", "password"),
    [(USER_DN, ""), ("", "alice-pw")],
    ids=["empty-password", "empty-dn"],
)
@pytest_twisted.ensureDeferred
async def test_credentials_ldap3_refuses_are_refused_unsent(
    double: Double, user: str, password: str
) -> None:
    """A password or DN ldap3 will not send is a refusal, and nothing reaches the directory."""
    conn = Connection(
        Server(double.url, get_info=NONE),
        user=user,
        password=password,
        authentication=SIMPLE,
        raise_exceptions=True,
    )
    try:
        refused = await deferToThread(simple_bind, conn)
    finally:
        conn.unbind()
    assert refused is not None
    assert refused.startswith("not sent:")
    assert double.answers.binds == []
