"""A progress bar on standard error (tqdm), or nothing.

The bar is shown only when asked for and standard error is a terminal, so
that ``--json`` output piped to another program and test runs stay clean.
"""

from __future__ import annotations

import sys
from typing import IO, Protocol

__all__ = ["NullProgress", "Progress", "progress_bar"]


class Progress(Protocol):
    """What the load test tells a progress display."""

    def update(self, n: int = 1) -> object:
        """``n`` more units are done."""
        ...

    def set_postfix_str(self, s: str = "", refresh: bool = True) -> object:  # noqa: FBT001, FBT002 - tqdm's signature
        """Show ``s`` after the bar (e.g. the phase)."""
        ...

    def close(self) -> object:
        """The work is over: remove or finish the display."""
        ...


class NullProgress:
    """Shows nothing."""

    def update(self, n: int = 1) -> None:
        """Ignore progress."""

    def set_postfix_str(self, s: str = "", refresh: bool = True) -> None:  # noqa: FBT001, FBT002 - tqdm's signature
        """Ignore the status text."""

    def close(self) -> None:
        """Nothing to close."""


def progress_bar(
    total: int, unit: str, *, enabled: bool, stream: IO[str] | None = None
) -> Progress:
    """A tqdm bar counting to ``total`` ``unit``s on ``stream`` (standard error),
    or a :class:`NullProgress` when not ``enabled`` or the stream is no terminal."""
    out = sys.stderr if stream is None else stream
    if not enabled or not out.isatty():
        return NullProgress()
    from tqdm import tqdm  # noqa: PLC0415 - only when a bar is shown (it is slow to import)

    return tqdm(total=total, unit=unit, unit_scale=True, file=out, mininterval=0.2, leave=False)
