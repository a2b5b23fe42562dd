"""The report as text tables for a terminal.

One run: the spread before the change, after it, the movement with where
the moved users came from and went to, and for live runs the traffic.  Two
runs (``--policy both``): the same figures side by side, one column group
per policy.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from frontend.loadtest.report import Distribution, Movement, Report, RoundTiming, Run, Traffic

__all__ = ["render"]


def _grid(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """Columns padded to their widest cell; the first left-aligned, others right."""
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        first = cells[0].ljust(widths[0])
        rest = [c.rjust(w) for c, w in zip(cells[1:], widths[1:], strict=True)]
        return "  ".join([first, *rest]).rstrip()

    return [line(header), *(line(r) for r in rows)]


def _pct(x: float) -> str:
    return f"{100 * x:.2f}%"


def _n(x: int | None) -> str:
    return "-" if x is None else f"{x:,}"


#: Smaller p-values are written in scientific notation.
_SMALLEST_FIXED = 1e-4


def _p(x: float) -> str:
    return f"{x:.4f}" if x >= _SMALLEST_FIXED else f"{x:.1e}"


def _heading(report: Report) -> str:
    p = report.parameters
    parts = [f"{p.get('users', 0):,} users"]
    if report.mode == "live":
        parts.append(f"{p.get('requests_per_user')} requests each")
    if p.get("replicas") is not None:
        parts.append(f"{p['replicas']} replicas")
    parts.append(f"policy {p.get('policy') or 'as configured'}")
    if p.get("change"):
        where = f" after round {p['change_after_round']}" if "change_after_round" in p else ""
        parts.append(f"change {p['change']}{where}")
    parts.append(f"seed {p.get('seed')}")
    return f"feproxy loadtest {report.mode}: " + ", ".join(parts)


def _distribution(d: Distribution) -> list[str]:
    live = d.requests is not None
    header = ["server", *(["requests"] if live else []), "users", "share", "vs mean"]
    rows = [
        [
            s.server + ("" if s.expected else " (not a replica)"),
            *([_n(s.requests)] if live else []),
            _n(s.users),
            _pct(s.share),
            f"{s.vs_mean:.4f}",
        ]
        for s in d.servers
    ]
    summary = (
        f"max/mean {d.max_over_mean:.4f}   chi-square {d.chi_square:.2f} ({d.dof} df)"
        f"   p-value {_p(d.p_value)}"
    )
    return [*_grid(header, rows), summary]


def _movement(m: Movement) -> list[str]:
    lines = [
        f"moved: {m.moved:,} of {m.users:,} users ({_pct(m.moved_fraction)}); "
        f"ideal {_pct(m.ideal_fraction)}; caused by the change {m.caused:,}, "
        f"unnecessary {m.unnecessary:,}"
    ]
    names = sorted(set(m.moved_from) | set(m.moved_to), key=lambda n: (n.lower(), n))
    rows = [[n, _n(m.moved_from.get(n, 0)), _n(m.moved_to.get(n, 0))] for n in names]
    lines += _grid(["server", "moved out", "moved in"], rows)
    over = "the survivors" if m.spread_over == "moved_to" else "the servers they left"
    lines.append(
        f"spread of the caused moves over {over}: chi-square {m.spread_chi_square:.2f} "
        f"({m.spread_dof} df)   p-value {_p(m.spread_p_value)}"
    )
    return lines


def _round_groups(rounds: Sequence[RoundTiming]) -> list[str]:
    """Rounds grouped: the first one and the first after the change (cold caches)
    alone, the others together."""
    groups: list[list[RoundTiming]] = []
    previous_cold = False
    for i, r in enumerate(rounds):
        cold = i == 0 or (r.after_change and not rounds[i - 1].after_change)
        if cold or previous_cold:
            groups.append([r])
        else:
            groups[-1].append(r)
        previous_cold = cold
    out = []
    for group in groups:
        first, last = group[0].number, group[-1].number
        name = f"{first}" if first == last else f"{first}-{last}"
        requests = sum(r.requests for r in group)
        seconds = sum(r.seconds for r in group)
        rate = requests / seconds if seconds > 0 else 0.0
        tag = " after the change" if group[0].after_change else ""
        out.append(f"{name}{tag} {requests:,} in {seconds:.2f} s ({rate:,.0f} req/s)")
    return out


def _traffic(t: Traffic) -> list[str]:
    statuses = ", ".join(f"{k}: {v:,}" for k, v in t.statuses.items())
    lines = [
        f"traffic: {t.requests:,} requests in {t.elapsed_seconds:.2f} s "
        f"({t.requests_per_second:,.1f} req/s), concurrency {t.concurrency}; "
        f"{t.succeeded:,} ok, {t.failed:,} failed ({statuses})",
        "latency ms: " + "  ".join(f"{k} {v:.1f}" for k, v in t.latency_ms.items()),
        "rounds: " + "; ".join(_round_groups(t.rounds)),
    ]
    if t.errors:
        lines.append("errors: " + ", ".join(f"{k} {v:,}" for k, v in t.errors.items()))
    after = t.stickiness_violations_after
    sticky = f"stickiness violations: {t.stickiness_violations_before:,} before the change"
    sticky += "" if after is None else f", {after:,} after"
    if t.prediction_mismatches is not None:
        sticky += (
            f"; users routed unlike frontend.routing.hashing predicts: {t.prediction_mismatches:,}"
        )
    return [*lines, sticky]


def _single(run: Run) -> list[str]:
    label = "before the change" if run.after is not None else "distribution"
    lines = ["", f"{label} ({run.before.users:,} users)", *_distribution(run.before)]
    if run.after is not None and run.movement is not None:
        lines += ["", f"after the change: {run.movement.description}", *_distribution(run.after)]
        lines += ["", *_movement(run.movement)]
    if run.traffic is not None:
        lines += ["", *_traffic(run.traffic)]
    return lines


def _side_by_side(runs: Sequence[Run]) -> list[str]:
    def block(title: str, pick: Callable[[Run], Distribution | None]) -> list[str]:
        dists = [pick(r) for r in runs]
        names = sorted(
            {s.server for d in dists if d is not None for s in d.servers},
            key=lambda n: (n.lower(), n),
        )
        header = ["server"]
        for r in runs:
            header += [f"{r.policy} users", "share"]
        rows = []
        for name in names:
            row = [name]
            for d in dists:
                load = next((s for s in d.servers if s.server == name), None) if d else None
                row += ["-", "-"] if load is None else [_n(load.users), _pct(load.share)]
            rows.append(row)

        def stat(label: str, f: Callable[[Distribution], str]) -> list[str]:
            out = [label]
            for d in dists:
                out += ["-" if d is None else f(d), ""]
            return out

        rows.append(stat("max/mean", lambda d: f"{d.max_over_mean:.4f}"))
        rows.append(stat("chi-square (df)", lambda d: f"{d.chi_square:.2f} ({d.dof})"))
        rows.append(stat("p-value", lambda d: _p(d.p_value)))
        return ["", title, *_grid(header, rows)]

    lines = block("before the change" if runs[0].after else "distribution", lambda r: r.before)
    moves = [r.movement for r in runs]
    first = moves[0]
    if first is not None and all(m is not None for m in moves):
        lines += block(f"after the change: {first.description}", lambda r: r.after)
        rows = [
            ["moved users", *(_pct(m.moved_fraction) for m in moves if m)],
            ["ideal", *(_pct(m.ideal_fraction) for m in moves if m)],
            ["unnecessary moves", *(_n(m.unnecessary) for m in moves if m)],
            ["spread p-value", *(_p(m.spread_p_value) for m in moves if m)],
        ]
        lines += ["", *_grid(["movement", *(str(r.policy) for r in runs)], rows)]
    times = ", ".join(f"{r.policy} {r.elapsed_seconds:.2f} s" for r in runs)
    return [*lines, "", f"time: {times}"]


def render(report: Report) -> str:
    """The whole report as text (ending in a newline)."""
    lines = [_heading(report)]
    lines += [f"note: {note}" for note in report.notes]
    if len(report.runs) == 1:
        lines += _single(report.runs[0])
        if report.mode == "offline":
            lines += ["", f"time: {report.runs[0].elapsed_seconds:.2f} s"]
    else:
        lines += _side_by_side(report.runs)
    return "\n".join(lines) + "\n"
