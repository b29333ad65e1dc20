"""The report's plots (matplotlib, Agg backend, PNG files in ``plots/``).

Every plot is titled and labelled; every run label keeps one colour across all plots
(:func:`palette`): methods get distinct colours, linear-scalarization sweep points share a
light grey and single-task baselines a dark dashed line. Long curves are averaged into at most
:data:`MAX_POINTS` bins, so a report stays fast for long runs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mtldiag.report.plots.comparison import final_metrics, pareto
from mtldiag.report.plots.forest import forest
from mtldiag.report.plots.layers import layer_heatmap
from mtldiag.report.plots.style import DPI, Style, palette, plt, run_labels
from mtldiag.report.plots.training import (
    conflict_over_training,
    grad_norm_ratio,
    loss_curves,
    step_time,
    weight_trajectories,
)
from mtldiag.rundir.load import RunData


@dataclass(frozen=True)
class Plot:
    """One written plot: its file, and the title and caption the report shows with it."""

    name: str
    title: str
    caption: str
    path: Path


PlotFn = Callable[[RunData, dict[str, Style]], "tuple[Any, str] | None"]

# name, title, function — in the order the report shows them
PLOTS: list[tuple[str, str, PlotFn]] = [
    ("forest", "Δm% per method, paired by seed", forest),
    ("loss_curves", "Training loss per task", loss_curves),
    ("final_metrics", "Final metric per task", final_metrics),
    ("pareto", "Task trade-off (Pareto)", pareto),
    ("conflict", "Gradient conflict over training", conflict_over_training),
    ("grad_norm_ratio", "Gradient-norm ratio over training", grad_norm_ratio),
    ("layer_heatmap", "Mean cosine per shared layer", layer_heatmap),
    ("weights", "Loss-weight trajectories", weight_trajectories),
    ("step_time", "Step time", step_time),
]


def make_plots(data: RunData, out_dir: Path) -> tuple[list[Plot], list[str]]:
    """Write every plot that applies to ``out_dir``; return them and any plot failures.

    A plot that fails is reported as a warning rather than losing the whole report.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    styles = palette(run_labels(data))
    plots, warnings = [], []
    for name, title, fn in PLOTS:
        path = out_dir / f"{name}.png"
        try:
            made = fn(data, styles)
            if made is None:
                path.unlink(missing_ok=True)  # a stale plot from an earlier report
                continue
            fig, caption = made
            try:
                fig.savefig(path, dpi=DPI)
            finally:
                plt.close(fig)
        except Exception as exc:  # noqa: BLE001 - one bad plot must not lose the report
            plt.close("all")
            warnings.append(f"plot '{name}' failed: {type(exc).__name__}: {exc}")
            continue
        plots.append(Plot(name, title, caption, path))
    return plots, warnings
