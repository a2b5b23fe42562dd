"""Child processes for tests: they never outlive the test run."""

from __future__ import annotations

import ctypes
import ctypes.util
import signal
from collections.abc import Callable

__all__ = ["die_with_parent"]

_PR_SET_PDEATHSIG = 1


def die_with_parent() -> Callable[[], None]:
    """A ``preexec_fn``: the child gets SIGTERM when the test process dies
    (even by SIGKILL).  Pair it with ``start_new_session=True``.

    libc and prctl are looked up here, before the fork, so the child only
    calls into C between fork and exec.
    """
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    prctl = libc.prctl

    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)

    return preexec
