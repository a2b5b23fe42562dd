"""How a stub server answers ``Expect: 100-continue`` (pure logic, no I/O).

In mode ``decide`` (the default) a server judges a request that expects
``100 Continue`` from its head alone, as a good back end does: when it would
answer anything but success (a referral, a 404, any fault that spoils the
answer) it answers at once, without ``100 Continue`` and without reading the
body; otherwise it sends ``100 Continue`` and reads the body.  In mode
``blind`` it behaves like stock twisted.web: ``100 Continue`` at once, then
the body, then the answer (so a referral arrives after the whole body).
"""

from __future__ import annotations

from backend_stub.faults import Fault
from backend_stub.routing import Reply, SinkReply, StreamReply, TextReply
from backend_stub.topology import EXPECT_MODES, ExpectMode

__all__ = ["EARLY_FAULTS", "ExpectError", "answers_before_body", "parse_expect", "wants_continue"]

# Faults that spoil the answer, so a deciding server applies them from the
# head instead of asking for the body first.  ``delay`` only holds the answer
# back (a slow server still succeeds): it does not hold ``100 Continue``.
EARLY_FAULTS = frozenset({"hang", "cut", "drop", "garbage"})

_SUCCESS = range(200, 300)  # the 2xx statuses


class ExpectError(ValueError):
    """An expect-mode body from the control API is malformed."""


def parse_expect(data: object) -> ExpectMode:
    """Validate a decoded JSON body such as ``{"mode": "blind"}``."""
    if not isinstance(data, dict):
        raise ExpectError("expected a JSON object")
    for key in data:
        if key != "mode":
            raise ExpectError(f"{key}: unknown key")
    mode = data.get("mode")
    for known in EXPECT_MODES:
        if mode == known:
            return known
    raise ExpectError(f"mode: expected one of {', '.join(EXPECT_MODES)}, got {mode!r}")


def wants_continue(expect: bytes | None, version: bytes) -> bool:
    """Whether a request with this ``Expect`` value and HTTP *version* waits
    for ``100 Continue`` (as twisted.web decides: HTTP/1.1 only)."""
    return expect is not None and expect.lower() == b"100-continue" and version == b"HTTP/1.1"


def answers_before_body(reply: Reply, fault: Fault) -> bool:
    """Whether a deciding server answers a request that would get *reply*
    under *fault* without asking for its body."""
    if fault.mode in EARLY_FAULTS:
        return True
    if isinstance(reply, SinkReply | StreamReply):
        return False
    return isinstance(reply, TextReply) and reply.status not in _SUCCESS
