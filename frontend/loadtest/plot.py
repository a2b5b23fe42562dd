"""``--plot FILE.png``: users per server before and after the change.

matplotlib is an optional extra (``pip install feproxy[plot]``): it is
imported here, only when a plot is asked for, and drawn on a bare
``Figure`` with the Agg canvas (no GUI, no global pyplot state).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Final

from frontend.loadtest.report import Report, Run

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

__all__ = ["MISSING_HINT", "PlotUnavailable", "require_matplotlib", "write_plot"]

MISSING_HINT: Final = (
    "--plot needs matplotlib, an optional extra: pip install 'feproxy[plot]' "
    "(or pip install matplotlib)"
)

#: More servers than this get slanted labels.
_MAX_UPRIGHT_LABELS: Final = 8


class PlotUnavailable(RuntimeError):
    """matplotlib is not installed."""


def require_matplotlib() -> tuple[type[Figure], type[FigureCanvasAgg]]:
    """matplotlib's Figure and Agg canvas classes; PlotUnavailable without matplotlib."""
    try:
        # An optional extra: imported only when a plot is asked for.
        from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: PLC0415
        from matplotlib.figure import Figure  # noqa: PLC0415
    except ImportError:
        raise PlotUnavailable(MISSING_HINT) from None
    return Figure, FigureCanvasAgg


def _draw(axes: Axes, run: Run) -> None:
    names = sorted(
        {s.server for s in run.before.servers}
        | ({s.server for s in run.after.servers} if run.after else set()),
        key=lambda n: (n.lower(), n),
    )
    before = {s.server: s.users for s in run.before.servers}
    positions = list(range(len(names)))
    labels = [n.split(".", 1)[0] for n in names]
    width = 0.4 if run.after is not None else 0.8
    axes.bar(
        [p - (width / 2 if run.after else 0) for p in positions],
        [before.get(n, 0) for n in names],
        width,
        label="before",
    )
    mean_before = run.before.users / max(1, len(run.before.servers))
    axes.axhline(mean_before, linestyle=":", color="gray", label="mean before")
    if run.after is not None:
        after = {s.server: s.users for s in run.after.servers}
        axes.bar(
            [p + width / 2 for p in positions],
            [after.get(n, 0) for n in names],
            width,
            label="after",
        )
        mean_after = run.after.users / max(1, len(run.after.servers))
        axes.axhline(mean_after, linestyle="--", color="gray", label="mean after")
    title = f"policy {run.policy or 'as configured'}"
    if run.movement is not None:
        m = run.movement
        title += (
            f": {m.description}\nmoved {100 * m.moved_fraction:.2f}%"
            f" (ideal {100 * m.ideal_fraction:.2f}%)"
        )
    axes.set_title(title, fontsize=9)
    axes.set_xticks(
        positions, labels, rotation=45 if len(names) > _MAX_UPRIGHT_LABELS else 0, fontsize=8
    )
    axes.set_ylabel("users")
    axes.legend(fontsize=8)


def write_plot(report: Report, path: str | Path) -> None:
    """Draw one histogram per run into the PNG file ``path``.

    Raises :class:`PlotUnavailable` without matplotlib, OSError if the file
    cannot be written.
    """
    figure_class, canvas_class = require_matplotlib()
    runs = report.runs
    figure = figure_class(figsize=(6 * len(runs), 4.5), layout="constrained")
    canvas_class(figure)
    axes = figure.subplots(1, len(runs), squeeze=False)[0]
    for ax, run in zip(axes, runs, strict=True):
        _draw(ax, run)
    figure.suptitle(
        f"feproxy loadtest {report.mode}: {report.parameters.get('users', 0):,} users",
        fontsize=10,
    )
    figure.savefig(str(path), format="png", dpi=100)
