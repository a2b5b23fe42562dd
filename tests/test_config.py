"""Configuration validation: every error names its key path; the CLI refuses bad files."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from frontend.config import load_config, parse_config
from frontend.errors import ConfigError
from tests.fakes import BASE_CONFIG

ROOT = Path(__file__).resolve().parent.parent


def _with(**changes: object) -> dict[str, Any]:
    data: dict[str, Any] = {
        k: (dict(v) if isinstance(v, dict) else list(v)) for k, v in BASE_CONFIG.items()
    }
    for dotted, value in changes.items():
        section, _, key = dotted.partition("__")
        if key:
            data[section][key] = value
        else:
            data[section] = value
    return data


@pytest.mark.parametrize(
    ("changes", "key"),
    [
        ({"frontend__listen": []}, "frontend.listen"),
        ({"frontend__listen": ["tcp:notaport"]}, "frontend.listen[0]"),
        (
            {"frontend__listen": ["ssl:443:privateKey=/nonexistent.pem"]},
            "frontend.listen[0]",
        ),
        ({"frontend__backend_port": 70000}, "frontend.backend_port"),
        ({"frontend__connect_timeout": "5"}, "frontend.connect_timeout"),
        ({"frontend__hash_policy": "random"}, "frontend.hash_policy"),
        ({"frontend__bogus": 1}, "frontend.bogus"),
        (
            {"vdirs": [{"path": "exchweb", "kind": "static", "servers": ["a"]}]},
            "vdirs[0].path",
        ),
        ({"vdirs": [{"path": "/x", "kind": "weird"}]}, "vdirs[0].kind"),
        (
            {"vdirs": [{"path": "/x", "kind": "static", "servers": []}]},
            "vdirs[0].servers",
        ),
        (
            {
                "vdirs": [
                    {"path": "/x", "kind": "static", "servers": ["a"]},
                    {"path": "/X/", "kind": "static", "servers": ["b"]},
                ]
            },
            "vdirs[1].path",
        ),
        ({"hosts": {"ex1": "not-an-ip"}}, "hosts.ex1"),
        ({"frontend__authenticate": True}, "directory"),
    ],
)
def test_invalid_values_name_their_key(changes: dict[str, Any], key: str) -> None:
    """Each kind of mistake is reported with the dotted path of the key at fault."""
    with pytest.raises(ConfigError) as e:
        parse_config(_with(**changes))
    assert e.value.key == key


def test_defaults_fill_in_a_minimal_file() -> None:
    """A minimal file gets port 80 back ends, ten-minute caches and marks, rendezvous."""
    fe = parse_config(BASE_CONFIG).frontend
    assert fe.backend_port == 80
    assert fe.cache_ttl == 600
    assert fe.unavailable_for == 600
    assert fe.hash_policy == "rendezvous"


def test_shipped_configurations_are_valid() -> None:
    """Every example configuration in conf/ passes validation."""
    files = sorted((ROOT / "conf").glob("feproxy*.toml"))
    assert files
    for f in files:
        load_config(f)


def test_check_config_command_reports_key_and_exits_nonzero(tmp_path: Path) -> None:
    """`feproxy check-config` prints the key path and reason and exits 1 on a bad file."""
    bad = tmp_path / "bad.toml"
    bad.write_text(
        '[frontend]\nlisten = ["tcp:8000"]\nbackend_port = "eighty"\n'
        'authenticate = false\n[[vdirs]]\npath = "/x"\nkind = "static"\n'
        'servers = ["a"]\n'
    )
    r = subprocess.run(  # noqa: PLW1510 - the exit status is what is checked
        [sys.executable, "-m", "frontend", "check-config", str(bad)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 1
    assert "frontend.backend_port: expected int, got str" in r.stderr
    good = tmp_path / "good.toml"
    good.write_text(bad.read_text().replace('"eighty"', "8080"))
    r = subprocess.run(  # noqa: PLW1510 - the exit status is what is checked
        [sys.executable, "-m", "frontend", "check-config", str(good)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stderr


def test_serve_refuses_bad_file_with_nonzero_exit(tmp_path: Path) -> None:
    """`feproxy serve` with an invalid file exits non-zero before listening."""
    bad = tmp_path / "bad.toml"
    bad.write_text("[frontend\n")
    r = subprocess.run(  # noqa: PLW1510 - the exit status is what is checked
        [sys.executable, "-m", "frontend", "serve", "--config", str(bad)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 1
    assert "not valid TOML" in r.stderr


def _directory(**extra: object) -> dict[str, Any]:
    table = {
        "url": "ldap://127.0.0.1:389",
        "bind_dn": "cn=svc",
        "bind_password": "pw",
        "base_dn": "dc=example,dc=com",
        **extra,
    }
    return {**BASE_CONFIG, "directory": table}


def test_directory_attribute_names_can_be_overridden() -> None:
    """[directory.attributes] renames what the front end reads; unknown keys are refused."""
    config = parse_config(_directory(attributes={"sam_account_name": "uid"}))
    assert config.directory is not None
    assert config.directory.attributes.sam_account_name == "uid"
    assert config.directory.attributes.proxy_addresses == "proxyAddresses"
    assert config.directory.config_dn == "dc=example,dc=com"
    with pytest.raises(ConfigError) as e:
        parse_config(_directory(attributes={"samaccountname": "uid"}))
    assert e.value.key == "directory.attributes.samaccountname"


def test_directory_object_class_names_can_be_overridden() -> None:
    """[directory.object_classes] renames the classes the filters select; the rest keep
    their AD names."""
    config = parse_config(
        _directory(object_classes={"user": "inetOrgPerson", "pf_tree": "1.3.6.1.4.1.32473.1.2.5"})
    )
    assert config.directory is not None
    classes = config.directory.object_classes
    assert (classes.user, classes.public_mdb, classes.pf_tree) == (
        "inetOrgPerson",
        "msExchPublicMDB",
        "1.3.6.1.4.1.32473.1.2.5",
    )
    default = parse_config(_directory())
    assert default.directory is not None
    assert default.directory.object_classes.user == "user"


@pytest.mark.parametrize(
    ("table", "value", "key"),
    [
        ("object_classes", {"users": "person"}, "directory.object_classes.users"),
        ("object_classes", {"user": ""}, "directory.object_classes.user"),
        ("object_classes", {"user": 5}, "directory.object_classes.user"),
        ("object_classes", {"user": "user)(cn=*"}, "directory.object_classes.user"),
        ("object_classes", {"pf_tree": "ms Exch PFTree"}, "directory.object_classes.pf_tree"),
        ("object_classes", {"public_mdb": "1.2."}, "directory.object_classes.public_mdb"),
        ("object_classes", {"user": "person;binary"}, "directory.object_classes.user"),
        ("object_classes", "inetOrgPerson", "directory.object_classes"),
        ("attributes", {"home_mdb": "homeMDB)(x=*"}, "directory.attributes.home_mdb"),
        ("attributes", {"home_mdb": "2home"}, "directory.attributes.home_mdb"),
        ("attributes", [], "directory.attributes"),
    ],
)
def test_bad_object_class_or_attribute_name_names_its_key(
    table: str, value: object, key: str
) -> None:
    """An unknown key, or a value that is not a name (it would go into LDAP filters
    as it is), is refused with its key path."""
    with pytest.raises(ConfigError) as e:
        parse_config(_directory(**{table: value}))
    assert e.value.key == key


def test_attribute_names_may_be_oids_or_carry_options() -> None:
    """An attribute may be named by a numeric OID or with options (objectGUID;binary)."""
    config = parse_config(
        _directory(attributes={"object_guid": "objectGUID;binary", "dns_host_name": "2.5.4.3"})
    )
    assert config.directory is not None
    assert config.directory.attributes.object_guid == "objectGUID;binary"


def test_check_config_names_a_bad_object_class(tmp_path: Path) -> None:
    """`feproxy check-config` refuses a bad [directory.object_classes] value, naming it."""
    bad = tmp_path / "bad.toml"
    conf = (ROOT / "conf" / "feproxy.toml").read_text()
    bad.write_text(conf + '\n[directory.object_classes]\nuser = "inet Org Person"\n')
    r = subprocess.run(  # noqa: PLW1510 - the exit status is what is checked
        [sys.executable, "-m", "frontend", "check-config", str(bad)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 1
    assert "directory.object_classes.user: expected an object class name" in r.stderr


@pytest.mark.parametrize(
    ("extra", "key"),
    [
        ({"url": "http://x"}, "directory.url"),
        ({"timeout": 0}, "directory.timeout"),
        ({"pool_size": 0}, "directory.pool_size"),
        ({"poll_interval": -1}, "directory.poll_interval"),
        ({"bind_password_file": "/nonexistent"}, "directory.bind_password_file"),
    ],
)
def test_invalid_directory_settings_name_their_key(extra: dict[str, Any], key: str) -> None:
    """Directory settings are validated like the rest, key path included."""
    with pytest.raises(ConfigError) as e:
        parse_config(_directory(**extra))
    assert e.value.key == key
