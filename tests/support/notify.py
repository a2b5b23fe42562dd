"""A stand-in for systemd's notification socket: what a test process sent, and from whom."""

from __future__ import annotations

import socket
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Message", "NotifySocket"]

_UCRED = struct.Struct("3i")  # struct ucred: pid, uid, gid


@dataclass(frozen=True)
class Message:
    """One datagram: its ``VAR=value`` lines and the sender's pid (from the kernel)."""

    pid: int
    fields: dict[str, str]

    def __contains__(self, line: str) -> bool:
        name, _, value = line.partition("=")
        return self.fields.get(name) == value


class NotifySocket:
    """A bound AF_UNIX datagram socket that records who sends what (SO_PASSCRED)."""

    def __init__(self, path: Path) -> None:
        # sockaddr_un holds 107 bytes of path: keep test paths short.
        assert len(str(path)) < 100, path
        self.path = path
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.bind(str(path))
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)

    def receive(self, timeout: float) -> Message | None:
        """The next message, or None if none comes within ``timeout`` s."""
        self._sock.settimeout(timeout)
        try:
            data, ancillary, _flags, _address = self._sock.recvmsg(
                4096, socket.CMSG_SPACE(_UCRED.size)
            )
        except TimeoutError:
            return None
        pid = 0
        for level, kind, credentials in ancillary:
            if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                pid = _UCRED.unpack(credentials[: _UCRED.size])[0]
        fields = {}
        for line in data.decode().splitlines():
            name, _, value = line.partition("=")
            fields[name] = value
        return Message(pid, fields)

    def next(self, *, timeout: float = 20.0, pings: bool = False) -> Message:
        """The next message (``WATCHDOG=1`` ones skipped unless ``pings``)."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            assert left > 0, "no notification came"
            message = self.receive(left)
            if message is not None and (pings or "WATCHDOG=1" not in message):
                return message

    def until(self, wanted: Callable[[Message], bool], *, timeout: float = 20.0) -> Message:
        """The first message, pings included, that is ``wanted``."""
        deadline = time.monotonic() + timeout
        while not wanted(message := self.next(timeout=deadline - time.monotonic(), pings=True)):
            pass
        return message

    def close(self) -> None:
        self._sock.close()

    def __enter__(self) -> NotifySocket:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
