"""[directory.object_classes]: a directory whose users are plain inetOrgPerson
entries (no AD ``user`` class), through `feproxy serve` against a real slapd."""

from __future__ import annotations

import base64
import http.client
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_twisted

from frontend.config.directory import ObjectClassNames
from frontend.directory.ldap import LdapDirectory
from frontend.loadtest.slapd import Slapd
from frontend.ops.reactor import global_reactor
from tests.support.configs import directory_table, farm_frontend, farm_hosts, write_config
from tests.support.farm import Farm, free_port
from tests.support.serve import ServeProcess
from tests.support.slapd import start_or_fail

reactor = global_reactor()

MB1 = "cn=MB1,cn=InformationStore,cn=EX1,cn=Servers,cn=Exchange,cn=Configuration,dc=example,dc=com"

# Ina is an inetOrgPerson and nothing else: her login is uid, her UPN mail,
# and her mailbox store is named by seeAlso (person's DN-valued attribute).
INA = f"""
dn: cn=Ina Inet,cn=Users,dc=example,dc=com
objectClass: top
objectClass: person
objectClass: organizationalPerson
objectClass: inetOrgPerson
cn: Ina Inet
sn: Inet
uid: ina
mail: ina@example.com
seeAlso: {MB1}
userPassword: ina-pw
"""

#: What inetOrgPerson provides for what the front end reads.
ATTRIBUTES = {"sam_account_name": "uid", "user_principal_name": "mail", "home_mdb": "seeAlso"}


@pytest.fixture(scope="module")
def ina_slapd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Slapd]:
    """A slapd with conf/directory.ldif and Ina."""
    workdir = tmp_path_factory.mktemp("object-classes-slapd")
    slapd = start_or_fail(lambda: Slapd(workdir, extra_ldif=INA))
    try:
        yield slapd
    finally:
        slapd.stop()


def serve(path: Path, farm: Farm, slapd: Slapd, **directory: object) -> tuple[ServeProcess, int]:
    """`feproxy serve` with /exchange and /apps on ``slapd`` (``directory``: more keys)."""
    port = free_port()
    config = {
        "frontend": farm_frontend(port, farm, connect_timeout=2.0, response_timeout=5.0),
        "hosts": farm_hosts(farm),
        "directory": directory_table(slapd, attributes=ATTRIBUTES, **directory),
        "vdirs": [
            {"path": "/exchange", "kind": "mailbox", "smtp_domain": "example.com"},
            {"path": "/apps", "kind": "public", "tree": "Apps"},
        ],
    }
    return ServeProcess.start(write_config(path, config), ("127.0.0.1", port)), port


def get(port: int, path: str, login: str, password: str) -> tuple[int, str | None]:
    """(status, X-Backend-Server) of GET ``path`` with Basic credentials."""
    token = base64.b64encode(f"{login}:{password}".encode()).decode()
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=15)
    try:
        c.request("GET", path, headers={"Authorization": f"Basic {token}"})
        r = c.getresponse()
        r.read()
        return r.status, r.getheader("X-Backend-Server")
    finally:
        c.close()


def test_inetorgperson_users_are_found_with_the_user_class_configured(
    clean_farm: Farm, ina_slapd: Slapd, tmp_path: Path
) -> None:
    """With object_classes.user = "inetOrgPerson", Ina logs in (by uid or mail), her
    public folder request is proxied and /exchange/ goes to her store's server."""
    proc, port = serve(
        tmp_path / "fe.toml", clean_farm, ina_slapd, object_classes={"user": "inetOrgPerson"}
    )
    with proc:
        status, backend = get(port, "/apps/Projects/", "ina", "ina-pw")
        assert (status, backend is not None) == (200, True)
        assert get(port, "/apps/Projects/", "ina@example.com", "ina-pw")[0] == 200
        assert get(port, "/apps/Projects/", "ina", "wrong")[0] == 401
        clean_farm.clear()
        assert get(port, "/exchange/", "ina", "ina-pw")[1] == "ex1.example.com"
    (record,) = clean_farm.requests()
    assert (record["server"], record["uri"]) == ("ex1.example.com", "/exchange/ina/")


def test_inetorgperson_users_are_not_found_without_the_user_class(
    clean_farm: Farm, ina_slapd: Slapd, tmp_path: Path
) -> None:
    """With the default user class ("user"), the same attribute names find nobody: 401."""
    proc, port = serve(tmp_path / "fe.toml", clean_farm, ina_slapd)
    with proc:
        assert get(port, "/apps/Projects/", "ina", "ina-pw")[0] == 401
        assert get(port, "/exchange/", "ina", "ina-pw")[0] == 401
    assert clean_farm.requests() == []


@pytest_twisted.async_yield_fixture
async def directories(slapd: Slapd) -> AsyncIterator[list[LdapDirectory]]:
    """LdapDirectories on the shared slapd: default classes, then pf_tree and
    public_mdb renamed to a class no tree or store has."""
    made = [
        LdapDirectory(slapd.settings(object_classes=classes), reactor)
        for classes in (
            ObjectClassNames(),
            ObjectClassNames(pf_tree="organizationalUnit"),
            ObjectClassNames(public_mdb="organizationalUnit"),
        )
    ]
    for directory in made:
        directory.start()
    yield made
    for directory in made:
        await directory.stop()


@pytest_twisted.ensureDeferred
async def test_tree_and_store_classes_are_the_configured_ones(
    directories: list[LdapDirectory],
) -> None:
    """pf_tree and public_mdb name the classes the replica searches select."""
    default, other_tree, other_store = directories
    expected = ("ex2.example.com", "ex3.example.com", "ex4.example.com")
    assert await default.tree_replicas("Apps") == expected
    assert await default.default_tree_replicas() == ("ex1.example.com", "ex2.example.com")
    assert await other_tree.tree_replicas("Apps") == ()
    assert await other_tree.default_tree_replicas() == ()
    assert await other_store.tree_replicas("Apps") == ()
