"""Passwords reach the directory as the client sent them: odd characters
through `feproxy serve` against a real slapd, which compares octets."""

from __future__ import annotations

import base64
import http.client
import unicodedata
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import pytest_twisted

from frontend.directory.pool import LdapPool
from frontend.loadtest.slapd import Slapd
from frontend.ops.reactor import global_reactor
from tests.support.configs import directory_table, farm_frontend, farm_hosts, write_config
from tests.support.farm import Farm, free_port
from tests.support.serve import ServeProcess
from tests.support.slapd import start_or_fail

reactor = global_reactor()


@dataclass(frozen=True)
class Case:
    """A user whose password is ``right``; each of ``wrong`` must be refused."""

    name: str
    right: bytes
    wrong: tuple[bytes, ...]

    @property
    def login(self) -> str:
        return f"pw-{self.name}"


def _utf8(text: str) -> bytes:
    return text.encode("utf-8")


CASES = [
    Case("tab", _utf8("pass\tword"), (_utf8("pass word"), _utf8("password"))),
    Case("control-01", _utf8("pass\x01word"), (_utf8("password"), _utf8("pass\x02word"))),
    Case("nul", _utf8("pass\x00word"), (_utf8("pass"), _utf8("password"))),
    Case("del", _utf8("pass\x7fword"), (_utf8("password"),)),
    Case("next-line-u0085", _utf8("pass\u0085word"), (_utf8("pass word"), _utf8("password"))),
    Case("private-use-ue000", _utf8("pass\ue000word"), (_utf8("pass\ue001word"),)),
    Case("latin-hebrew", _utf8("pass\u05d0word"), (_utf8("pass\u05d1word"), _utf8("password"))),
    # SASLprep maps a no-break space to a space and drops a soft hyphen.
    Case("no-break-space", _utf8("pass\u00a0word"), (_utf8("pass word"), _utf8("password"))),
    Case("soft-hyphen", _utf8("pass\u00adword"), (_utf8("password"), _utf8("pass-word"))),
    # SASLprep normalises to NFKC: the ligature becomes "fi", the decomposed
    # umlauts their composed forms.
    Case("ligature", _utf8("pass\ufb01le"), (_utf8("passfile"),)),
    Case(
        "decomposed",
        _utf8(unicodedata.normalize("NFD", "p\u00e4ssw\u00f6rd")),
        (_utf8("p\u00e4ssw\u00f6rd"),),
    ),
    Case("umlauts", _utf8("p\u00e4ssw\u00f6rd"), (_utf8("p\u00e4ssw\u00f6rt"), _utf8("passwrd"))),
    Case("emoji", _utf8("pass\U0001f511word"), (_utf8("pass\U0001f512word"),)),
    Case("spaces-around", _utf8(" pass word "), (_utf8("pass word"), _utf8(" pass word"))),
    # Not UTF-8 (a Latin-1 client): the octets go as they are.
    Case("latin-1-octets", "p\u00e4ssw\u00f6rd".encode("latin-1"), (_utf8("p\u00e4ssw\u00f6rd"),)),
]


def user_ldif(case: Case) -> str:
    password = base64.b64encode(case.right).decode()
    guid = base64.b64encode(uuid.uuid5(uuid.NAMESPACE_URL, case.login).bytes_le).decode()
    return f"""
dn: cn={case.login},cn=Users,dc=example,dc=com
objectClass: top
objectClass: person
objectClass: organizationalPerson
objectClass: inetOrgPerson
objectClass: user
cn: {case.login}
sn: {case.name}
sAMAccountName: {case.login}
userPassword:: {password}
objectGUID:: {guid}
"""


@dataclass(frozen=True)
class Stack:
    """``feproxy serve`` (debug log) on ``port``, over a slapd with the CASES' users."""

    serve: ServeProcess
    port: int


@pytest.fixture(scope="module")
def users_slapd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Slapd]:
    """A slapd with conf/directory.ldif and the CASES' users."""
    ldif = "".join(user_ldif(case) for case in CASES)
    workdir = tmp_path_factory.mktemp("passwords-slapd")
    slapd = start_or_fail(lambda: Slapd(workdir, extra_ldif=ldif))
    try:
        yield slapd
    finally:
        slapd.stop()


@pytest.fixture(scope="module")
def stack(
    farm: Farm, users_slapd: Slapd, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    port = free_port()
    config = {
        "frontend": farm_frontend(port, farm, connect_timeout=2.0, response_timeout=5.0),
        "hosts": farm_hosts(farm),
        "directory": directory_table(users_slapd),
        "vdirs": [{"path": "/apps", "kind": "public", "tree": "Apps"}],
    }
    path = write_config(tmp_path_factory.mktemp("passwords") / "fe.toml", config)
    with ServeProcess.start(path, ("127.0.0.1", port), "--log-level", "debug") as serve:
        yield Stack(serve, port)


def status_for(port: int, login: str, password: bytes) -> tuple[int, str | None]:
    """(status, X-Backend-Server) of GET /apps/Projects/ with these Basic credentials."""
    token = base64.b64encode(login.encode() + b":" + password).decode()
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=15)
    try:
        c.request("GET", "/apps/Projects/", headers={"Authorization": f"Basic {token}"})
        r = c.getresponse()
        r.read()
        return r.status, r.getheader("X-Backend-Server")
    finally:
        c.close()


def log_lines(serve: ServeProcess, since: int) -> list[str]:
    return serve.errors()[since:].splitlines()


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_password_is_checked_as_the_octets_sent(stack: Stack, case: Case) -> None:
    """The right password is proxied (200); each changed or normalised one is 401, never 503,
    logged below error level."""
    since = len(stack.serve.errors())
    status, backend = status_for(stack.port, case.login, case.right)
    assert (status, backend is not None) == (200, True)
    for wrong in case.wrong:
        assert status_for(stack.port, case.login, wrong)[0] == 401, wrong
    lines = log_lines(stack.serve, since)
    assert [line for line in lines if "#error]" in line or "#critical]" in line] == []
    refused = [line for line in lines if f"wrong password for '{case.login}'" in line]
    assert len(refused) == len(case.wrong)
    assert all("#info]" in line for line in refused)
    binds = [line for line in lines if "refused: invalidCredentials" in line]
    assert len(binds) == len(case.wrong)
    assert all("#debug]" in line for line in binds)


def test_wrong_password_log_lines_never_hold_the_password(stack: Stack) -> None:
    """A refused bind is logged with the user's name and the directory's answer only."""
    since = len(stack.serve.errors())
    assert status_for(stack.port, "pw-umlauts", _utf8("secret-\u00a7-guess"))[0] == 401
    text = "".join(log_lines(stack.serve, since))
    assert "pw-umlauts" in text
    assert "secret" not in text


@pytest_twisted.ensureDeferred
async def test_service_account_password_is_sent_as_its_utf8_octets(users_slapd: Slapd) -> None:
    """A bind_password with a no-break space binds the service account (SASLprep would
    have made it a space)."""
    case = next(c for c in CASES if c.name == "no-break-space")
    dn = f"cn={case.login},cn=Users,dc=example,dc=com"
    settings = users_slapd.settings(bind_dn=dn, bind_password=case.right.decode())
    pool = LdapPool(settings, reactor, None)
    pool.start()
    try:
        who = await pool.run("whoami", lambda conn: conn.extend.standard.who_am_i())
    finally:
        await pool.stop()
    assert str(who).lower() == f"dn:{dn}".lower()
