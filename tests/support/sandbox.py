"""The seccomp part of a systemd unit's sandbox, applied to a command without systemd.

``python -m tests.support.sandbox UNIT -- COMMAND...`` reads the
``[Service]`` section of UNIT and loads, as systemd 252 would, seccomp
filters for

- ``SystemCallFilter=`` (an allow list: its ``@groups`` expanded by
  ``systemd-analyze syscall-filter``, ``~`` lines taken out of it;
  ``SystemCallArchitectures=native``),
- ``MemoryDenyWriteExecute=yes`` (no mapping both writable and executable,
  no ``mprotect`` that adds execution, no ``shmat`` with SHM_EXEC),
- ``RestrictAddressFamilies=`` (``socket()`` of any other family fails with
  EAFNOSUPPORT),

then executes COMMAND, which inherits them with its children.  A system call
outside the allow list kills the process (SIGSYS) where the unit's
``SystemCallErrorNumber=EPERM`` would only fail the call: stricter, so that a
test sees every such call.  The other options (namespaces, read-only
directories, capabilities) need systemd itself; ``systemd-analyze verify``
checks how they are written.

libseccomp (Debian's libseccomp2, a dependency of systemd) is called through
ctypes; the filters are loaded in the order systemd loads them, the allow
list last (loading a filter is itself a system call it may not allow).
"""

from __future__ import annotations

import ctypes
import errno
import mmap
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

__all__ = ["Unit", "apply", "expand_group", "read_unit"]


class Unit:
    """A unit file's sections as ordered (key, value) pairs (keys may repeat)."""

    def __init__(self, sections: dict[str, list[tuple[str, str]]]) -> None:
        self.sections = sections

    def values(self, section: str, key: str) -> list[str]:
        """Every value of ``key`` in ``section``, in order."""
        return [v for k, v in self.sections.get(section, []) if k == key]

    def value(self, section: str, key: str) -> str | None:
        """The last value of ``key`` (what systemd uses for a single-valued key)."""
        found = self.values(section, key)
        return found[-1] if found else None


def read_unit(path: Path) -> Unit:
    """Parse a unit file (comments, sections, ``Key=value`` lines)."""
    sections: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] | None = None
    for number, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], [])
            continue
        key, sep, value = line.partition("=")
        if not sep or current is None or line.endswith("\\"):
            raise ValueError(f"{path}:{number}: not a Key=value line in a section: {raw!r}")
        current.append((key.strip(), value.strip()))
    return Unit(sections)


def expand_group(name: str, seen: set[str] | None = None) -> set[str]:
    """The system calls of ``@group`` (nested groups expanded), as systemd lists them."""
    seen = set() if seen is None else seen
    seen.add(name)
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        raise FileNotFoundError("systemd-analyze (scripts/install-systemd-tools installs it)")
    listing = subprocess.run(
        [analyze, "syscall-filter", name], capture_output=True, text=True, check=True
    ).stdout
    calls: set[str] = set()
    for raw in listing.splitlines()[1:]:
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("@"):
            if line not in seen:
                calls |= expand_group(line, seen)
        else:
            calls.add(line)
    return calls


def _expand(items: Sequence[str]) -> set[str]:
    calls: set[str] = set()
    for item in items:
        calls |= expand_group(item) if item.startswith("@") else {item}
    return calls


def allowed_calls(unit: Unit) -> set[str] | None:
    """The system calls ``SystemCallFilter=`` allows (None: no allow list)."""
    allowed: set[str] | None = None
    for line in unit.values("Service", "SystemCallFilter"):
        deny = line.startswith("~")
        items = line.removeprefix("~").split()
        if allowed is None:
            if deny:
                raise ValueError("only an allow list (a first line without ~) is emulated")
            allowed = _expand(["@default"])  # systemd adds it to every allow list
        if deny:
            allowed -= _expand(items)
        else:
            allowed |= _expand(items)
    return allowed


# libseccomp ---------------------------------------------------------------

_ALLOW = 0x7FFF0000
_KILL_PROCESS = 0x80000000
_CMP_EQ = 4
_CMP_MASKED_EQ = 7
_SHM_EXEC = 0o100000
_MAX_FAMILY = 46  # AF_MAX on Linux 6.x


def _errno(number: int) -> int:
    return 0x00050000 | (number & 0xFFFF)


class _Cmp(ctypes.Structure):
    """struct scmp_arg_cmp: argument number, comparison, two operands."""

    _fields_ = (
        ("arg", ctypes.c_uint),
        ("op", ctypes.c_int),
        ("datum_a", ctypes.c_uint64),
        ("datum_b", ctypes.c_uint64),
    )


class _Seccomp:
    """Just enough of libseccomp: a filter, its rules, loading it."""

    def __init__(self) -> None:
        lib = ctypes.CDLL("libseccomp.so.2", use_errno=True)
        lib.seccomp_init.restype = ctypes.c_void_p
        lib.seccomp_init.argtypes = [ctypes.c_uint32]
        lib.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
        lib.seccomp_rule_add_array.argtypes = [
            ctypes.c_void_p,
            ctypes.c_uint32,
            ctypes.c_int,
            ctypes.c_uint,
            ctypes.POINTER(_Cmp),
        ]
        lib.seccomp_load.argtypes = [ctypes.c_void_p]
        lib.seccomp_release.argtypes = [ctypes.c_void_p]
        self._lib = lib

    def load(self, default: int, rules: Sequence[tuple[int, str, tuple[_Cmp, ...]]]) -> None:
        """One filter: ``default`` for every call, ``(action, call, comparisons)`` rules."""
        ctx = self._lib.seccomp_init(default)
        if not ctx:
            raise OSError("seccomp_init failed")
        try:
            for action, name, cmps in rules:
                number = self._lib.seccomp_syscall_resolve_name(name.encode())
                if number < 0:  # not a system call of this architecture
                    continue
                array = (_Cmp * len(cmps))(*cmps) if cmps else None
                rc = self._lib.seccomp_rule_add_array(ctx, action, number, len(cmps), array)
                if rc != 0:
                    raise OSError(-rc, f"seccomp_rule_add({name}): {os.strerror(-rc)}")
            rc = self._lib.seccomp_load(ctx)
            if rc != 0:
                raise OSError(-rc, f"seccomp_load: {os.strerror(-rc)}")
        finally:
            self._lib.seccomp_release(ctx)


def apply(unit: Unit) -> None:
    """Load the unit's seccomp filters into this process (for good)."""
    seccomp = _Seccomp()
    service = "Service"
    if unit.value(service, "MemoryDenyWriteExecute") == "yes":
        wx = mmap.PROT_WRITE | mmap.PROT_EXEC
        deny = _errno(errno.EPERM)
        seccomp.load(
            _ALLOW,
            [
                (deny, "mmap", (_Cmp(2, _CMP_MASKED_EQ, wx, wx),)),
                (deny, "mprotect", (_Cmp(2, _CMP_MASKED_EQ, mmap.PROT_EXEC, mmap.PROT_EXEC),)),
                (
                    deny,
                    "pkey_mprotect",
                    (_Cmp(2, _CMP_MASKED_EQ, mmap.PROT_EXEC, mmap.PROT_EXEC),),
                ),
                (deny, "shmat", (_Cmp(2, _CMP_MASKED_EQ, _SHM_EXEC, _SHM_EXEC),)),
            ],
        )
    families = unit.value(service, "RestrictAddressFamilies")
    if families is not None:
        kept = {int(getattr(socket, name)) for name in families.split()}
        refuse = _errno(errno.EAFNOSUPPORT)
        seccomp.load(
            _ALLOW,
            [
                (refuse, "socket", (_Cmp(0, _CMP_EQ, family, 0),))
                for family in range(_MAX_FAMILY)
                if family not in kept
            ],
        )
    allowed = allowed_calls(unit)
    if allowed is not None:
        if unit.value(service, "SystemCallArchitectures") != "native":
            raise ValueError("only SystemCallArchitectures=native is emulated")
        seccomp.load(_KILL_PROCESS, [(_ALLOW, name, ()) for name in sorted(allowed)])


def main(argv: Sequence[str]) -> None:
    """``UNIT -- COMMAND...``: apply UNIT's filters, then become COMMAND."""
    unit, dashes, *command = argv
    if dashes != "--" or not command:
        raise SystemExit("usage: python -m tests.support.sandbox UNIT -- COMMAND...")
    apply(read_unit(Path(unit)))
    os.execv(command[0], command)  # noqa: S606 - the command line the test wrote, as it is


if __name__ == "__main__":
    main(sys.argv[1:])
