"""``feproxy plan``'s output: an aligned table, CSV, or one JSON object.

The table is for reading: the change, the users who move (login, from, to,
primary SMTP address, DN), the counts per (from, to) pair and the users
per server before and after.  CSV is for a mail merge: a header row, then
one row per user who moves.  JSON holds everything (:func:`plan_json`,
keys documented in README.md, Operations).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from typing import Any, Final

from frontend.ops.planning import Plan, PlannedUser

__all__ = ["CSV_HEADER", "JSON_VERSION", "plan_csv", "plan_json", "plan_table"]

#: Bumped when a JSON key changes meaning or disappears (adding keys keeps it).
JSON_VERSION: Final = 1

#: The CSV columns.
CSV_HEADER: Final = ("login", "dn", "mail", "token", "from", "to")

#: How a missing server is written in the table and CSV (null in JSON).
_NONE: Final = "-"


def _pair(old: str, new: str) -> str:
    return f"{old or _NONE} -> {new or _NONE}"


def _token(user: PlannedUser) -> str | None:
    return None if user.token is None else user.token.hex()


def plan_json(plan: Plan) -> dict[str, Any]:
    """The plan as one JSON object (``json.dumps`` takes it as it is)."""
    store = plan.store
    return {
        "version": JSON_VERSION,
        "change": plan.change,
        "tree": plan.tree,
        "policy": plan.policy,
        "balanced": plan.balanced,
        "before": list(plan.before),
        "after": list(plan.after),
        "added": list(plan.added),
        "removed": list(plan.removed),
        "store": None
        if store is None
        else {
            "dn": store.dn,
            "name": store.name,
            "public_store_before": store.public_store_before,
            "public_store_after": store.public_store_after,
            "server_before": store.server_before,
            "server_after": store.server_after,
        },
        "users": plan.summary.users,
        "moved": plan.summary.moving,
        "moved_fraction": round(plan.summary.moved_fraction, 6),
        "moving": [
            {
                "login": u.login,
                "dn": u.dn,
                "mail": u.mail,
                "token": _token(u),
                "from": u.placement.before,
                "to": u.placement.after,
            }
            for u in plan.moving
        ],
        "moves": {_pair(old, new): n for (old, new), n in plan.summary.moves.items()},
        "servers": {
            name or _NONE: {"before": plan.summary.before[name], "after": plan.summary.after[name]}
            for name in plan.summary.before
        },
        "notes": list(plan.notes),
    }


def plan_csv(plan: Plan) -> str:
    """A header row, then one row per user who moves."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_HEADER)
    for u in plan.moving:
        writer.writerow(
            [
                u.login,
                u.dn,
                u.mail or "",
                _token(u) or "",
                u.placement.before or "",
                u.placement.after or "",
            ]
        )
    return out.getvalue()


def _grid(header: Sequence[str], rows: Sequence[Sequence[str]], right: int = 0) -> list[str]:
    """Columns padded to their widest cell; the last ``right`` right-aligned."""
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    split = len(header) - right

    def line(cells: Sequence[str]) -> str:
        padded = [
            c.ljust(w) if i < split else c.rjust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ]
        return "  ".join(padded).rstrip()

    return [line(header), *(line(r) for r in rows)]


def _heading(plan: Plan) -> list[str]:
    lines: list[str] = []
    if plan.store is not None:
        s = plan.store
        lines.append(f"feproxy plan: the public store of mailbox store {s.name or s.dn}")
        lines.append(f"public store before: {s.public_store_before or _NONE}")
        lines.append(f"public store after:  {s.public_store_after}")
        lines.append(
            f"its users' public-folder server: {s.server_before or _NONE}"
            f" -> {s.server_after or _NONE}"
        )
    else:
        changes = [f"adding {a}" for a in plan.added] + [f"removing {r}" for r in plan.removed]
        lines.append(f"feproxy plan: tree {plan.tree}, {', '.join(changes)}")
        lines.append(f"replicas before: {', '.join(plan.before) or _NONE}")
        lines.append(f"replicas after:  {', '.join(plan.after)}")
    balance = f"hash policy {plan.policy}" if plan.balanced else "not balanced (no authentication)"
    lines.append(balance)
    lines.extend(f"note: {note}" for note in plan.notes)
    return lines


def plan_table(plan: Plan) -> str:
    """The plan as aligned text for a terminal."""
    summary = plan.summary
    lines = _heading(plan)
    lines.append("")
    moving = plan.moving
    if moving:
        rows = [
            [
                u.login or _NONE,
                u.placement.before or _NONE,
                u.placement.after or _NONE,
                u.mail or _NONE,
                u.dn,
            ]
            for u in moving
        ]
        lines.extend(_grid(["login", "from", "to", "mail", "dn"], rows))
        lines.append("")
    share = f"{100 * summary.moved_fraction:.1f}%"
    lines.append(f"users: {summary.users}, moving: {summary.moving} ({share})")
    if summary.moves:
        lines.append("")
        pairs = [[_pair(old, new), str(n)] for (old, new), n in summary.moves.items()]
        lines.extend(_grid(["move", "users"], pairs, right=1))
    lines.append("")
    servers = [
        [name or _NONE, str(summary.before[name]), str(summary.after[name])]
        for name in summary.before
    ]
    lines.extend(_grid(["server", "before", "after"], servers, right=2))
    return "\n".join(lines) + "\n"
