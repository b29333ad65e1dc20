"""What every plot shares: one style per run label, the figure grid, legends, margins and the
curve helpers (bin-averaging, rolling means, means over seeds)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import matplotlib

matplotlib.use("Agg")  # never a window: the report runs in terminals, CI and notebooks alike

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from mtldiag.rundir.load import RunData  # noqa: E402
from mtldiag.rundir.schema import label_kind  # noqa: E402

MAX_POINTS = 400  # a plotted curve has at most this many points
DPI = 100
LOG_SPAN = 100.0  # log scale when a plot's positive values span this factor or more
SWEEP_COLOR = "#b0b0b0"
SINGLE_COLOR = "#333333"
TASK_COLORS = ["#1b9e77", "#d95f02", "#7570b3", "#e7298a", "#66a61e", "#e6ab02", "#a6761d"]


@dataclass(frozen=True)
class Style:
    color: str
    linestyle: str = "-"
    linewidth: float = 1.8
    alpha: float = 1.0


def palette(labels: list[str]) -> dict[str, Style]:
    """A fixed style per run label, in order of first appearance."""
    methods = [x for x in labels if label_kind(x) == "method"]
    cmap = plt.get_cmap("tab10" if len(methods) <= 10 else "tab20")
    out: dict[str, Style] = {}
    for i, m in enumerate(methods):
        out[m] = Style(matplotlib.colors.to_hex(cmap(i % cmap.N)))
    for x in labels:
        if label_kind(x) == "sweep":
            out[x] = Style(SWEEP_COLOR, "-", 1.0, 0.8)
        elif label_kind(x) == "single":
            out[x] = Style(SINGLE_COLOR, "--", 1.5)
    return out


def run_labels(data: RunData) -> list[str]:
    """Run labels in the order they ran (summary first, then steps.csv)."""
    labels: list[str] = []
    if data.summary:
        labels += [str(r.get("method")) for r in data.summary.get("runs") or []]
    if data.steps is not None:
        labels += list(dict.fromkeys(data.steps["method"]))
    return list(dict.fromkeys(labels))


def downsample(x: np.ndarray, y: np.ndarray, n: int = MAX_POINTS) -> tuple[np.ndarray, np.ndarray]:
    """Bin-average a long curve to at most ``n`` points (NaN-aware)."""
    if len(x) <= n:
        return x, y
    edges = np.linspace(0, len(x), n + 1).astype(int)
    xs = np.array([x[a:b].mean() for a, b in zip(edges[:-1], edges[1:], strict=True)])
    with np.errstate(all="ignore"):
        ys = np.array(
            [
                np.nanmean(y[a:b]) if np.isfinite(y[a:b]).any() else np.nan
                for a, b in zip(edges[:-1], edges[1:], strict=True)
            ]
        )
    return xs, ys


def rolling(y: pd.Series, frac: float = 0.05) -> pd.Series:
    """Centred rolling mean over ``frac`` of the points (at least 1)."""
    window = max(1, int(round(len(y) * frac)))
    return y.rolling(window, center=True, min_periods=1).mean()


def seed_mean(frame: pd.DataFrame, column: str) -> pd.Series:
    """Mean over seeds of ``column``, indexed by step."""
    return frame.groupby("step", sort=True)[column].mean()


def wants_log(values: list[np.ndarray]) -> bool:
    pos = np.concatenate([v[np.isfinite(v) & (v > 0)] for v in values]) if values else np.array([])
    return pos.size > 0 and pos.max() / pos.min() >= LOG_SPAN


def adjust(
    fig: Any,
    left: float = 0.8,
    right: float = 0.25,
    top: float = 0.65,
    bottom: float = 0.6,
    wspace: float = 0.32,
    hspace: float = 0.55,
) -> None:
    """Margins in inches. Fixed margins instead of tight/constrained layout: those re-draw the
    figure to measure it, which doubles the cost of a report."""
    w, h = fig.get_size_inches()
    fig.subplots_adjust(
        left=left / w,
        right=1 - right / w,
        top=1 - top / h,
        bottom=bottom / h,
        wspace=wspace,
        hspace=hspace,
    )


def grid(
    n: int, max_cols: int = 3, size: tuple[float, float] = (4.6, 3.4), extra: float = 0.9
) -> tuple[Any, list[Any]]:
    """``n`` panels, up to ``max_cols`` a row; ``extra`` inches for a title and a legend."""
    cols = min(n, max_cols)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(
        rows, cols, figsize=(size[0] * cols, size[1] * rows + extra), squeeze=False
    )
    flat = list(axes.ravel())
    for ax in flat[n:]:
        ax.set_visible(False)
    return fig, flat[:n]


def legend(fig: Any, axes: list[Any], max_items: int = 30, bottom: float = 0.6) -> None:
    """One legend under the panels, for every labelled line; then the margins."""
    handles, labels = [], []
    for ax in axes:
        for h, lab in zip(*ax.get_legend_handles_labels(), strict=True):
            if lab not in labels and not lab.startswith("_"):
                handles.append(h)
                labels.append(lab)
    handles, labels = handles[:max_items], labels[:max_items]
    ncol = min(len(labels), 6) or 1
    rows = math.ceil(len(labels) / ncol)
    if labels:
        fig.legend(
            handles,
            labels,
            loc="lower center",
            ncol=ncol,
            fontsize=8,
            frameon=False,
            bbox_to_anchor=(0.5, 0.0),
        )
    adjust(fig, bottom=bottom + 0.22 * rows)


def legend_label(label: str, seen_sweep: list[bool]) -> str:
    """Sweep points share one legend entry."""
    if label_kind(label) == "sweep":
        if seen_sweep[0]:
            return "_sweep"
        seen_sweep[0] = True
        return "sweep points"
    return label
