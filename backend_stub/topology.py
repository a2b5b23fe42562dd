"""Load and validate the stub farm's topology file (TOML).

The topology names the servers of the farm (each on its own address, all on
one port), the mailboxes each holds and the public folders with their content
and replica servers.  Every validation error is a :class:`TopologyError`
whose message is one line and starts with the key at fault, for example
``servers[1].address: expected an IPv4 address, got 'x'``.
"""

from __future__ import annotations

import ipaddress
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal, TypeVar

__all__ = [
    "EXPECT_MODES",
    "MAX_PORT",
    "ExpectMode",
    "FolderSpec",
    "ServerSpec",
    "Topology",
    "TopologyError",
    "load_topology",
    "parse_host_port",
    "parse_topology",
    "path_segments",
]


# How a server answers ``Expect: 100-continue``: ``decide`` from the request
# head first (a final answer other than success comes at once, without
# ``100 Continue`` and without reading the body), or ``blind`` (``100
# Continue`` at once, as stock twisted.web does, and the answer after the body).
ExpectMode = Literal["decide", "blind"]
EXPECT_MODES: tuple[ExpectMode, ...] = ("decide", "blind")

MAX_PORT = 65535  # the largest TCP port number

_T = TypeVar("_T")


class TopologyError(ValueError):
    """The topology file is unreadable or violates the expected format."""


@dataclass(frozen=True)
class ServerSpec:
    """One stub back-end server: its name, listening address and mailboxes,
    and how it answers ``Expect: 100-continue`` at start."""

    name: str
    address: str
    mailboxes: tuple[str, ...]
    expect: ExpectMode = "decide"

    def holds_mailbox(self, alias: str) -> bool:
        """Whether *alias* (case-insensitive) is one of this server's mailboxes."""
        wanted = alias.casefold()
        return any(box.casefold() == wanted for box in self.mailboxes)


@dataclass(frozen=True)
class FolderSpec:
    """A public folder: its URL path, its content and the servers holding it."""

    path: str
    content: str
    servers: tuple[str, ...]

    @property
    def segments(self) -> tuple[str, ...]:
        """The folder path split into case-folded, non-empty segments."""
        return tuple(seg.casefold() for seg in path_segments(self.path))


@dataclass(frozen=True)
class Topology:
    """The whole farm: shared port, control address, servers and folders."""

    port: int
    control_host: str
    control_port: int
    servers: tuple[ServerSpec, ...]
    folders: tuple[FolderSpec, ...]

    def server(self, name: str) -> ServerSpec:
        """The server called *name*; KeyError if there is none."""
        for spec in self.servers:
            if spec.name == name:
                return spec
        raise KeyError(name)

    def with_overrides(
        self, port: int | None = None, control: tuple[str, int] | None = None
    ) -> Topology:
        """A copy with the port and/or control address replaced (CLI options)."""
        result = self
        if port is not None:
            result = replace(result, port=port)
        if control is not None:
            result = replace(result, control_host=control[0], control_port=control[1])
        return result


def path_segments(path: str) -> list[str]:
    """Split a URL path into its non-empty segments (no decoding)."""
    return [seg for seg in path.split("/") if seg]


def parse_host_port(value: str, key: str = "control") -> tuple[str, int]:
    """Parse ``"host:port"`` (``"[::1]:port"`` for IPv6) of a loopback address.

    The control API has no authentication and can stop servers, so it is only
    ever bound to a loopback address.
    """
    host, sep, port_text = value.rpartition(":")
    if not sep or not host:
        raise TopologyError(f"{key}: expected 'host:port', got {value!r}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not port_text.isdigit():
        raise TopologyError(f"{key}: port must be a number, got {value!r}")
    port = _check_port(int(port_text), key)
    if host != "localhost":
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            raise TopologyError(
                f"{key}: expected an IP address or localhost, got {host!r}"
            ) from None
        if not address.is_loopback:
            raise TopologyError(f"{key}: must be a loopback address, got {host!r}")
    return host, port


def load_topology(path: str | Path) -> Topology:
    """Read and validate the topology file at *path*."""
    try:
        with Path(path).open("rb") as handle:
            data = tomllib.load(handle)
    except OSError as exc:
        raise TopologyError(f"cannot read {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise TopologyError(f"{path}: invalid TOML: {exc}") from None
    return parse_topology(data)


def parse_topology(data: Mapping[str, Any]) -> Topology:
    """Validate a decoded TOML document into a :class:`Topology`."""
    _check_keys(data, {"port", "control", "servers", "folders"}, "")
    port = _check_port(_require(data, "port", int, ""), "port")
    control_host, control_port = parse_host_port(_require(data, "control", str, ""))
    servers = _parse_servers(_require(data, "servers", list, ""))
    folders = _parse_folders(data.get("folders", []), servers)
    return Topology(port, control_host, control_port, servers, folders)


def _parse_servers(raw: list[object]) -> tuple[ServerSpec, ...]:
    if not raw:
        raise TopologyError("servers: at least one server is required")
    servers: list[ServerSpec] = []
    names: set[str] = set()
    addresses: set[str] = set()
    owners: dict[str, str] = {}
    for index, item in enumerate(raw):
        where = f"servers[{index}]"
        if not isinstance(item, dict):
            raise TopologyError(f"{where}: expected a table")
        _check_keys(item, {"name", "address", "mailboxes", "expect"}, where)
        name = _require(item, "name", str, where).strip()
        if not name:
            raise TopologyError(f"{where}.name: must not be empty")
        if name.casefold() in names:
            raise TopologyError(f"{where}.name: duplicate server name {name!r}")
        names.add(name.casefold())
        address = _require(item, "address", str, where)
        try:
            ipaddress.IPv4Address(address)
        except ValueError:
            raise TopologyError(
                f"{where}.address: expected an IPv4 address, got {address!r}"
            ) from None
        if address in addresses:
            raise TopologyError(f"{where}.address: duplicate address {address!r}")
        addresses.add(address)
        mailboxes = _string_list(item.get("mailboxes", []), f"{where}.mailboxes")
        for box in mailboxes:
            if "/" in box or "@" in box:
                raise TopologyError(f"{where}.mailboxes: {box!r}: an alias has no '/' or '@'")
            other = owners.setdefault(box.casefold(), name)
            if other != name:
                raise TopologyError(f"{where}.mailboxes: {box!r} is also on {other}")
        expect = item.get("expect", "decide")
        if expect not in EXPECT_MODES:
            raise TopologyError(
                f"{where}.expect: expected one of {', '.join(EXPECT_MODES)}, got {expect!r}"
            )
        servers.append(ServerSpec(name, address, tuple(mailboxes), expect))
    return tuple(servers)


def _parse_folders(raw: object, servers: Sequence[ServerSpec]) -> tuple[FolderSpec, ...]:
    if not isinstance(raw, list):
        raise TopologyError("folders: expected an array of tables")
    known = {spec.name for spec in servers}
    folders: list[FolderSpec] = []
    seen: set[tuple[str, ...]] = set()
    for index, item in enumerate(raw):
        where = f"folders[{index}]"
        if not isinstance(item, dict):
            raise TopologyError(f"{where}: expected a table")
        _check_keys(item, {"path", "content", "servers"}, where)
        path = _require(item, "path", str, where)
        if not path.startswith("/") or "?" in path or "#" in path:
            raise TopologyError(
                f"{where}.path: expected an absolute path without query, got {path!r}"
            )
        content = _require(item, "content", str, where)
        holders = _string_list(_require(item, "servers", list, where), f"{where}.servers")
        if not holders:
            raise TopologyError(f"{where}.servers: at least one server is required")
        for holder in holders:
            if holder not in known:
                raise TopologyError(f"{where}.servers: unknown server {holder!r}")
        folder = FolderSpec(path, content, tuple(holders))
        if not folder.segments:
            raise TopologyError(f"{where}.path: must name a folder, got {path!r}")
        if folder.segments in seen:
            raise TopologyError(f"{where}.path: duplicate folder {path!r}")
        seen.add(folder.segments)
        folders.append(folder)
    return tuple(folders)


def _require(table: Mapping[str, object], key: str, kind: type[_T], where: str) -> _T:
    name = f"{where}.{key}" if where else key
    if key not in table:
        raise TopologyError(f"{name}: missing")
    value = table[key]
    # bool is a subclass of int: "port = true" is not a port.
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise TopologyError(
            f"{name}: expected {_KIND_NAMES.get(kind, kind.__name__)}, got {value!r}"
        )
    return value


_KIND_NAMES = {int: "an integer", str: "a string", list: "an array"}


def _check_keys(table: Mapping[str, Any], allowed: set[str], where: str) -> None:
    for key in table:
        if key not in allowed:
            name = f"{where}.{key}" if where else key
            raise TopologyError(f"{name}: unknown key")


def _check_port(port: int, key: str) -> int:
    if not 1 <= port <= MAX_PORT:
        raise TopologyError(f"{key}: port must be in 1..{MAX_PORT}, got {port}")
    return port


def _string_list(value: object, key: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise TopologyError(f"{key}: expected an array of strings")
    if len({v.casefold() for v in value}) != len(value):
        raise TopologyError(f"{key}: duplicate entries")
    if any(not v.strip() for v in value):
        raise TopologyError(f"{key}: entries must not be empty")
    return list(value)
