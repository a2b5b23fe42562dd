"""The ``[directory]`` table of the configuration file: where the directory is,
how to use it, and the attribute and object class names it uses."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TypedDict

from frontend.errors import ConfigError

__all__ = [
    "AttributeNames",
    "DirectorySettings",
    "ObjectClassNames",
    "SettingsChanges",
    "parse_directory",
]


@dataclass(frozen=True)
class AttributeNames:
    """Every directory attribute name the front end uses (AD names by default;
    ``[directory.attributes]`` renames any)."""

    sam_account_name: str = "sAMAccountName"
    user_principal_name: str = "userPrincipalName"
    proxy_addresses: str = "proxyAddresses"
    home_mdb: str = "homeMDB"
    home_server_name: str = "msExchHomeServerName"
    protocol_settings: str = "protocolSettings"
    object_guid: str = "objectGUID"
    object_sid: str = "objectSid"
    owning_server: str = "msExchOwningServer"
    home_public_mdb: str = "msExchHomePublicMDB"
    owning_pf_tree: str = "msExchOwningPFTree"
    pf_tree_type: str = "msExchPFTreeType"
    dns_host_name: str = "dNSHostName"
    legacy_exchange_dn: str = "legacyExchangeDN"
    common_name: str = "cn"


@dataclass(frozen=True)
class ObjectClassNames:
    """The object classes the front end's filters select (AD names by default;
    ``[directory.object_classes]`` renames any)."""

    user: str = "user"
    public_mdb: str = "msExchPublicMDB"
    pf_tree: str = "msExchPFTree"
    private_mdb: str = "msExchPrivateMDB"  # mailbox stores (``feproxy plan``)
    server: str = "msExchExchangeServer"  # servers (``feproxy plan``)


@dataclass(frozen=True)
class DirectorySettings:
    """Where the directory is and how to use it."""

    url: str  # ldap://host:port (ldaps:// for TLS)
    bind_dn: str
    bind_password: str
    base_dn: str  # where users are searched (subtree)
    config_dn: str  # where servers, stores and trees are searched (subtree)
    netbios_domain: str | None = None  # accepts DOMAIN\user logins when it matches
    timeout: float = 5.0  # connect and per-operation timeout, seconds
    pool_size: int = 4  # threads = connections
    poll_interval: float = 60.0  # seconds between configuration change polls; 0: never
    change_attribute: str = "modifyTimestamp"  # or uSNChanged on Active Directory
    attributes: AttributeNames = field(default_factory=AttributeNames)
    object_classes: ObjectClassNames = field(default_factory=ObjectClassNames)

    def __post_init__(self) -> None:
        if self.pool_size < 1:
            raise ValueError(f"pool_size must be at least 1, not {self.pool_size}")
        if self.timeout <= 0:
            raise ValueError(f"timeout must be positive, not {self.timeout}")


class SettingsChanges(TypedDict, total=False):
    """Keyword arguments that replace fields of a :class:`DirectorySettings`
    (``dataclasses.replace(settings, **changes)``)."""

    url: str
    bind_dn: str
    bind_password: str
    base_dn: str
    config_dn: str
    netbios_domain: str | None
    timeout: float
    pool_size: int
    poll_interval: float
    change_attribute: str
    attributes: AttributeNames
    object_classes: ObjectClassNames


#: The most threads (and connections) ``pool_size`` may ask for.
MAX_POOL_SIZE = 64

_KEYS = {
    "url",
    "bind_dn",
    "bind_password",
    "bind_password_file",
    "base_dn",
    "config_dn",
    "netbios_domain",
    "timeout",
    "pool_size",
    "attributes",
    "object_classes",
    "poll_interval",
    "change_attribute",
}

# Names go into LDAP filters as they are: a descriptor (RFC 4512 keystring)
# or a numeric OID; an attribute may carry options (";binary").
_OBJECT_CLASS = re.compile(r"(?:[A-Za-z][A-Za-z0-9-]*|[0-9]+(?:\.[0-9]+)+)\Z")
_ATTRIBUTE = re.compile(r"(?:[A-Za-z][A-Za-z0-9-]*|[0-9]+(?:\.[0-9]+)+)(?:;[A-Za-z0-9-]+)*\Z")


def parse_directory(t: Mapping[str, object], key: str, base: Path) -> DirectorySettings:
    """Validate ``[directory]``; ``bind_password_file`` is read relative to ``base``."""
    for name in t:
        if name not in _KEYS:
            raise ConfigError(
                f"{key}.{name}",
                f"unknown key (expected one of {', '.join(sorted(_KEYS))})",
            )

    def text(name: str, default: str | None = None) -> str:
        v = t.get(name, default)
        if not isinstance(v, str) or not v:
            raise ConfigError(
                f"{key}.{name}",
                "missing" if v is None else "expected a non-empty string",
            )
        return v

    url = text("url")
    if not url.startswith(("ldap://", "ldaps://")):
        raise ConfigError(f"{key}.url", "expected ldap://host:port or ldaps://host:port")
    if "bind_password_file" in t:
        pfile = base / text("bind_password_file")
        try:
            password = pfile.read_text(encoding="utf-8").strip()
        except OSError as e:
            raise ConfigError(f"{key}.bind_password_file", f"cannot read: {e.strerror}") from None
    else:
        password = text("bind_password")
    base_dn = text("base_dn")
    timeout = t.get("timeout", 5.0)
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0:
        raise ConfigError(f"{key}.timeout", "expected a positive number of seconds")
    pool_size = t.get("pool_size", 4)
    if (
        isinstance(pool_size, bool)
        or not isinstance(pool_size, int)
        or not 1 <= pool_size <= MAX_POOL_SIZE
    ):
        raise ConfigError(f"{key}.pool_size", "expected an integer from 1 to 64")
    poll = t.get("poll_interval", 60.0)
    if isinstance(poll, bool) or not isinstance(poll, int | float) or poll < 0:
        raise ConfigError(f"{key}.poll_interval", "expected seconds (0 turns polling off)")
    change_attribute = t.get("change_attribute", "modifyTimestamp")
    if (
        not isinstance(change_attribute, str)
        or not change_attribute.isascii()
        or not change_attribute
    ):
        raise ConfigError(f"{key}.change_attribute", "expected an attribute name")
    netbios = t.get("netbios_domain")
    if netbios is not None and not isinstance(netbios, str):
        raise ConfigError(f"{key}.netbios_domain", "expected a string")
    attrs = _attribute_names(t.get("attributes", {}), f"{key}.attributes")
    classes = _object_class_names(t.get("object_classes", {}), f"{key}.object_classes")
    return DirectorySettings(
        url=url,
        bind_dn=text("bind_dn"),
        bind_password=password,
        base_dn=base_dn,
        config_dn=text("config_dn", base_dn),
        netbios_domain=netbios,
        timeout=float(timeout),
        pool_size=pool_size,
        poll_interval=float(poll),
        change_attribute=change_attribute,
        attributes=attrs,
        object_classes=classes,
    )


def _attribute_names(t: object, key: str) -> AttributeNames:
    """``[directory.attributes]``: a new name for any attribute the front end reads."""
    return AttributeNames(**_names(t, key, AttributeNames, "attribute", _ATTRIBUTE))


def _object_class_names(t: object, key: str) -> ObjectClassNames:
    """``[directory.object_classes]``: a new name for any object class the filters select."""
    return ObjectClassNames(**_names(t, key, ObjectClassNames, "object class", _OBJECT_CLASS))


def _names(
    t: object,
    key: str,
    names: type[AttributeNames | ObjectClassNames],
    what: str,
    pattern: re.Pattern[str],
) -> dict[str, str]:
    """The table ``t`` of new names: known keys only, each value a ``what`` name."""
    if not isinstance(t, Mapping):
        raise ConfigError(key, "expected a table")
    known = {f.name for f in fields(names)}
    for name, value in t.items():
        if name not in known:
            raise ConfigError(
                f"{key}.{name}",
                f"unknown {what} key (expected one of {', '.join(sorted(known))})",
            )
        if not isinstance(value, str) or not pattern.match(value):
            raise ConfigError(
                f"{key}.{name}",
                f"expected an {what} name (a letter, then letters, digits and '-'; "
                "or a numeric OID)",
            )
    return dict(t)
