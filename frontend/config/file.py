"""The configuration file: TOML, validated into frozen values.

Every problem is reported as a :class:`~frontend.errors.ConfigError` naming
the key path (``vdirs[2].servers``) and what was expected, so that
``feproxy check-config`` and ``feproxy serve`` can refuse a bad file with a
message an operator can act on.
"""

from __future__ import annotations

import enum
import socket
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TypeVar

from twisted.internet.endpoints import serverFromString
from twisted.internet.testing import MemoryReactor

from frontend.config.directory import DirectorySettings, parse_directory
from frontend.errors import ConfigError

__all__ = [
    "VDIR_KINDS",
    "Config",
    "FrontendSettings",
    "VirtualDirectory",
    "load_config",
    "parse_config",
]

VDIR_KINDS = ("static", "mailbox", "public")

MAX_PORT = 65535

T = TypeVar("T")


@dataclass(frozen=True)
class FrontendSettings:
    """How the front end itself behaves (the ``[frontend]`` table)."""

    name: str
    listen: tuple[str, ...]
    admin: tuple[str, ...] = ()
    backend_port: int = 80
    connect_timeout: float = 5.0
    response_timeout: float = 120.0
    max_idle_per_backend: int = 64
    idle_timeout: float = 60.0
    max_body_size: int = 1 << 30
    client_idle_timeout: float = 60.0
    header_timeout: float = 10.0
    body_timeout: float = 300.0
    send_timeout: float = 60.0
    max_connections: int = 10_000
    authenticate: bool = True
    realm: str = "feproxy"
    hash_policy: str = "rendezvous"
    cache_ttl: float = 600.0
    cache_size: int = 100_000
    unavailable_for: float = 600.0
    stop_timeout: float = 30.0


@dataclass(frozen=True)
class VirtualDirectory:
    """A URL prefix and how requests below it are routed.

    ``static``: to ``servers`` in order (the next one when a server cannot be
    reached).  ``mailbox``: by logon, with ``smtp_domain`` for explicit
    logon.  ``public``: a public-folder ``tree`` (``default`` for the MAPI
    tree, else a general-purpose tree's name or DN).
    """

    path: str
    kind: str
    servers: tuple[str, ...] = ()
    smtp_domain: str | None = None
    tree: str | None = None

    @cached_property
    def segments(self) -> tuple[str, ...]:
        """The path's segments, lowercased (computed once: routing reads it often)."""
        return tuple(s.lower() for s in self.path.strip("/").split("/") if s)


@dataclass(frozen=True)
class Config:
    """A whole validated configuration file."""

    frontend: FrontendSettings
    vdirs: tuple[VirtualDirectory, ...]
    hosts: Mapping[str, str] = field(default_factory=dict)
    directory: DirectorySettings | None = None
    source: str = "<memory>"


def load_config(path: str | Path) -> Config:
    """Read and validate the file at ``path``."""
    p = Path(path)
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except OSError as e:
        raise ConfigError("", f"cannot read {p}: {e.strerror or e}") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError("", f"{p} is not valid TOML: {e}") from None
    except UnicodeDecodeError:
        raise ConfigError("", f"{p} is not UTF-8 text") from None
    return parse_config(data, base=p.parent, source=str(p))


def parse_config(
    data: Mapping[str, object], *, base: Path | None = None, source: str = "<memory>"
) -> Config:
    """Validate an already-parsed TOML document."""
    base = base or Path.cwd()
    _only(data, "", {"frontend", "hosts", "vdirs", "directory"})
    frontend = _frontend(_table(data, "frontend", ""))
    hosts = _hosts(data.get("hosts", {}))
    vdirs = _vdirs(data.get("vdirs"))
    directory = None
    if "directory" in data:
        directory = parse_directory(_table(data, "directory", ""), "directory", base)
    needs_directory = frontend.authenticate or any(v.kind in ("mailbox", "public") for v in vdirs)
    if needs_directory and directory is None:
        raise ConfigError(
            "directory",
            "missing: authentication and mailbox/public virtual directories need the directory",
        )
    return Config(frontend=frontend, vdirs=vdirs, hosts=hosts, directory=directory, source=source)


# -- sections -----------------------------------------------------------------


def _frontend(t: Mapping[str, object]) -> FrontendSettings:
    k = "frontend"
    _only(t, k, set(FrontendSettings.__dataclass_fields__))
    listen = _get(t, "listen", list, k)
    if not listen:
        raise ConfigError(f"{k}.listen", "expected at least one endpoint string")
    for i, desc in enumerate(listen):
        _check_endpoint(desc, f"{k}.listen[{i}]")
    admin = _get(t, "admin", list, k, [])
    for i, desc in enumerate(admin):
        _check_endpoint(desc, f"{k}.admin[{i}]")
    if set(admin) & set(listen):
        raise ConfigError(f"{k}.admin", "must not repeat an endpoint of frontend.listen")
    d = FrontendSettings.__dataclass_fields__
    policy = _get(t, "hash_policy", str, k, d["hash_policy"].default)
    if policy not in ("rendezvous", "exchange"):
        raise ConfigError(f"{k}.hash_policy", "expected 'rendezvous' or 'exchange'")
    return FrontendSettings(
        name=_get(t, "name", str, k, socket.getfqdn()),
        listen=tuple(listen),
        admin=tuple(admin),
        backend_port=_port(t, "backend_port", k, 80),
        connect_timeout=_positive(t, "connect_timeout", k, 5.0),
        response_timeout=_positive(t, "response_timeout", k, 120.0),
        max_idle_per_backend=int(_positive(t, "max_idle_per_backend", k, 64)),
        idle_timeout=_positive(t, "idle_timeout", k, 60.0),
        max_body_size=int(_positive(t, "max_body_size", k, 1 << 30)),
        client_idle_timeout=_positive(t, "client_idle_timeout", k, 60.0),
        header_timeout=_positive(t, "header_timeout", k, 10.0),
        body_timeout=_positive(t, "body_timeout", k, 300.0),
        send_timeout=_positive(t, "send_timeout", k, 60.0),
        max_connections=int(_positive(t, "max_connections", k, 10_000)),
        authenticate=_get(t, "authenticate", bool, k, default=True),
        realm=_get(t, "realm", str, k, "feproxy"),
        hash_policy=policy,
        cache_ttl=_positive(t, "cache_ttl", k, 600.0),
        cache_size=int(_positive(t, "cache_size", k, 100_000)),
        unavailable_for=_positive(t, "unavailable_for", k, 600.0),
        stop_timeout=_positive(t, "stop_timeout", k, 30.0),
    )


def _hosts(t: object) -> dict[str, str]:
    if not isinstance(t, Mapping):
        raise ConfigError("hosts", "expected a table of host name = address")
    out: dict[str, str] = {}
    for name, addr in t.items():
        if not isinstance(addr, str):
            raise ConfigError(f"hosts.{name}", "expected an address string")
        try:
            socket.inet_pton(socket.AF_INET6 if ":" in addr else socket.AF_INET, addr)
        except OSError:
            raise ConfigError(f"hosts.{name}", f"{addr!r} is not an IP address") from None
        out[name.lower()] = addr
    return out


def _vdirs(items: object) -> tuple[VirtualDirectory, ...]:
    if not isinstance(items, list) or not items:
        raise ConfigError("vdirs", "expected at least one [[vdirs]] table")
    out: list[VirtualDirectory] = []
    seen: dict[tuple[str, ...], int] = {}
    for i, t in enumerate(items):
        k = f"vdirs[{i}]"
        if not isinstance(t, Mapping):
            raise ConfigError(k, "expected a table")
        _only(t, k, {"path", "kind", "servers", "smtp_domain", "tree"})
        path = _get(t, "path", str, k)
        if not path.startswith("/") or any(s in (".", "..") for s in path.split("/")):
            raise ConfigError(f"{k}.path", "expected an absolute path like /exchange")
        kind = _get(t, "kind", str, k)
        if kind not in VDIR_KINDS:
            raise ConfigError(f"{k}.kind", f"expected one of {', '.join(VDIR_KINDS)}")
        vdir = VirtualDirectory(path=path.rstrip("/") or "/", kind=kind)
        if kind == "static":
            servers = _get(t, "servers", list, k)
            if not servers or not all(isinstance(s, str) and s for s in servers):
                raise ConfigError(f"{k}.servers", "expected a list of host names")
            vdir = VirtualDirectory(vdir.path, kind, servers=tuple(servers))
        elif kind == "mailbox":
            domain = _get(t, "smtp_domain", str, k)
            if "@" in domain or not domain:
                raise ConfigError(f"{k}.smtp_domain", "expected a domain like example.com")
            vdir = VirtualDirectory(vdir.path, kind, smtp_domain=domain)
        else:
            vdir = VirtualDirectory(vdir.path, kind, tree=_get(t, "tree", str, k))
        if vdir.segments in seen:
            raise ConfigError(f"{k}.path", f"same path as vdirs[{seen[vdir.segments]}]")
        seen[vdir.segments] = i
        out.append(vdir)
    return tuple(out)


# -- helpers ------------------------------------------------------------------


def _check_endpoint(desc: object, key: str) -> None:
    """Build the endpoint the way ``serve`` will, on a reactor that never listens.

    This reports a typo, an unknown option or an unreadable certificate or key
    at load time without opening any socket.
    """
    if not isinstance(desc, str):
        raise ConfigError(key, "expected an endpoint string like tcp:443")
    kind = desc.split(":", 1)[0].lower()
    if kind not in ("tcp", "tcp6", "ssl", "unix"):
        raise ConfigError(key, f"unsupported endpoint type {kind!r} (tcp, ssl, unix)")
    try:
        serverFromString(MemoryReactor(), desc)
    except Exception as e:  # any parse or certificate error; reported, not raised
        raise ConfigError(key, f"invalid endpoint: {e}") from None


def _table(t: Mapping[str, object], name: str, parent: str) -> Mapping[str, object]:
    key = f"{parent}.{name}" if parent else name
    v = t.get(name)
    if not isinstance(v, Mapping):
        raise ConfigError(key, "missing table" if v is None else "expected a table")
    return v


def _only(t: Mapping[str, object], key: str, allowed: set[str]) -> None:
    for name in t:
        if name not in allowed:
            where = f"{key}.{name}" if key else name
            raise ConfigError(where, f"unknown key (expected one of {', '.join(sorted(allowed))})")


class _Missing(enum.Enum):
    MISSING = enum.auto()


_MISSING = _Missing.MISSING


def _get(
    t: Mapping[str, object], name: str, typ: type[T], key: str, default: T | _Missing = _MISSING
) -> T:
    """``t[name]`` checked to be a ``typ`` (a bool is no number; an int is a float)."""
    where = f"{key}.{name}" if key else name
    if name not in t:
        if isinstance(default, _Missing):
            raise ConfigError(where, "missing")
        return default
    v = t[name]
    if typ is float and isinstance(v, int) and not isinstance(v, bool):
        v = float(v)
    if not isinstance(v, typ) or (typ is not bool and isinstance(v, bool)):
        raise ConfigError(where, f"expected {typ.__name__}, got {type(v).__name__}")
    return v


def _positive(t: Mapping[str, object], name: str, key: str, default: float) -> float:
    v = float(_get(t, name, float, key, default))
    if v <= 0:
        raise ConfigError(f"{key}.{name}", "expected a positive number")
    return v


def _port(t: Mapping[str, object], name: str, key: str, default: int) -> int:
    v = _get(t, name, int, key, default)
    if not 0 < v <= MAX_PORT:
        raise ConfigError(f"{key}.{name}", "expected a port number 1-65535")
    return v
