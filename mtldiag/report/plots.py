"""The report's plots (matplotlib, Agg backend, PNG files in ``plots/``).

Every plot is titled and labelled; every run label keeps one colour across all plots
(:func:`palette`): methods get distinct colours, linear-scalarization sweep points share a
light grey and single-task baselines a dark dashed line. Long curves are averaged into at most
:data:`MAX_POINTS` bins, so a report stays fast for long runs.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # never a window: the report runs in terminals, CI and notebooks alike

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from mtldiag.engine.gramian import ALL_LAYERS  # noqa: E402
from mtldiag.report.tables import layer_scores, reference_run  # noqa: E402
from mtldiag.rundir.load import RunData  # noqa: E402

MAX_POINTS = 400  # a plotted curve has at most this many points
DPI = 100
LOG_SPAN = 100.0  # log scale when a plot's positive values span this factor or more
SWEEP_COLOR = "#b0b0b0"
SINGLE_COLOR = "#333333"
TASK_COLORS = ["#1b9e77", "#d95f02", "#7570b3", "#e7298a", "#66a61e", "#e6ab02", "#a6761d"]


@dataclass(frozen=True)
class Plot:
    """One written plot: its file, and the title and caption the report shows with it."""

    name: str
    title: str
    caption: str
    path: Path


@dataclass(frozen=True)
class Style:
    color: str
    linestyle: str = "-"
    linewidth: float = 1.8
    alpha: float = 1.0


def label_kind(label: str) -> str:
    """``method``, ``sweep`` (linear-scalarization point) or ``single`` (single-task run)."""
    if label.startswith("sweep:"):
        return "sweep"
    if label.startswith("single:"):
        return "single"
    return "method"


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


# -- data helpers ----------------------------------------------------------------------------


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


def _seed_mean(frame: pd.DataFrame, column: str) -> pd.Series:
    """Mean over seeds of ``column``, indexed by step."""
    return frame.groupby("step", sort=True)[column].mean()


def _wants_log(values: list[np.ndarray]) -> bool:
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


def _grid(
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


def _legend(fig: Any, axes: list[Any], max_items: int = 30, bottom: float = 0.6) -> None:
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


def _legend_label(label: str, seen_sweep: list[bool]) -> str:
    """Sweep points share one legend entry."""
    if label_kind(label) == "sweep":
        if seen_sweep[0]:
            return "_sweep"
        seen_sweep[0] = True
        return "sweep points"
    return label


# -- plots -----------------------------------------------------------------------------------


def loss_curves(data: RunData, styles: dict[str, Style]) -> tuple[Any, str] | None:
    steps = data.steps
    if steps is None or steps.empty:
        return None
    tasks = data.tasks
    labels = [x for x in styles if x in set(steps["method"])]
    fig, axes = _grid(len(tasks))
    n_seeds = steps.groupby("method")["seed"].nunique().max()
    for ax, t in zip(axes, tasks, strict=True):
        col, curves, seen = f"loss/{t}", [], [False]
        for label in labels:
            if label_kind(label) == "single" and label != f"single:{t}":
                continue
            sub = steps[steps["method"] == label]
            y = _seed_mean(sub, col).dropna()
            if y.empty:
                continue
            x, v = downsample(y.index.to_numpy(float), y.to_numpy(float))
            st = styles[label]
            ax.plot(
                x,
                v,
                color=st.color,
                ls=st.linestyle,
                lw=st.linewidth,
                alpha=st.alpha,
                label=_legend_label(label, seen),
            )
            curves.append(v)
        if _wants_log(curves):
            ax.set_yscale("log")
        ax.set_title(f"task {t}", fontsize=10)
        ax.set_xlabel("step")
        ax.set_ylabel("training loss" + (" (log)" if ax.get_yscale() == "log" else ""))
        ax.grid(alpha=0.3)
    seeds = f"mean over {n_seeds} seeds" if n_seeds > 1 else "raw, unweighted"
    fig.suptitle(f"Training loss per task ({seeds})", fontsize=12)
    _legend(fig, axes)
    return fig, "Raw (unweighted) task losses over training, one colour per method."


def _metric_table(
    data: RunData,
) -> tuple[list[str], dict[str, dict[str, tuple[float, float]]], dict[str, bool], str]:
    """Per label: {task: (mean, std)} of the evaluation metric, plus higher-is-better."""
    summary = data.summary or {}
    comp = summary.get("comparison") or {}
    hib = {t: bool((comp.get("higher_is_better") or {}).get(t)) for t in data.tasks}
    table: dict[str, dict[str, tuple[float, float]]] = {}
    for row in comp.get("rows") or []:
        cells = {}
        for t, c in (row.get("metric") or {}).items():
            if isinstance(c, dict) and c.get("mean") is not None:
                cells[t] = (float(c["mean"]), float(c.get("std") or 0.0))
        table[row["label"]] = cells
    if not table:  # no comparison section: average the runs' metrics over seeds
        by: dict[str, dict[str, list[float]]] = {}
        for r in summary.get("runs") or []:
            if r.get("status") != "ok":
                continue
            for t, v in (r.get("metrics") or {}).items():
                if v is not None:
                    by.setdefault(r["method"], {}).setdefault(t, []).append(float(v))
        table = {
            m: {
                t: (float(np.mean(v)), float(np.std(v, ddof=1)) if len(v) > 1 else 0.0)
                for t, v in d.items()
            }
            for m, d in by.items()
        }
    for t, c in (comp.get("single_task") or {}).items():
        if isinstance(c, dict) and c.get("mean") is not None:
            table.setdefault(f"single:{t}", {})[t] = (float(c["mean"]), float(c.get("std") or 0))
    evaluation = comp.get("evaluation") or summary.get("evaluation") or "metric"
    return list(table), table, hib, evaluation


def final_metrics(data: RunData, styles: dict[str, Style]) -> tuple[Any, str] | None:
    labels, table, hib, evaluation = _metric_table(data)
    shown = [x for x in labels if label_kind(x) != "sweep"]
    if len(shown) < 2:
        return None
    tasks = data.tasks
    label_h = 0.3 + 0.045 * max(len(x) for x in shown)  # rotated tick labels, inches
    width = max(3.6, 0.45 * len(shown) + 1.4)
    fig, axes = _grid(len(tasks), max_cols=4, size=(width, 3.0 + label_h))
    for ax, t in zip(axes, tasks, strict=True):
        names = [x for x in shown if t in table.get(x, {})]
        means = [table[x][t][0] for x in names]
        stds = [table[x][t][1] for x in names]
        ax.bar(
            range(len(names)),
            means,
            yerr=stds,
            capsize=3,
            color=[styles.get(x, Style(SINGLE_COLOR)).color for x in names],
            edgecolor="black",
            linewidth=0.4,
        )
        ax.set_xticks(range(len(names)), names, rotation=40, ha="right", fontsize=8)
        ax.set_title(f"task {t} ({'higher' if hib.get(t) else 'lower'} is better)", fontsize=10)
        ax.set_ylabel(evaluation)
        ax.grid(axis="y", alpha=0.3)
        if means and min(means) > 0 and max(means) / min(means) >= LOG_SPAN:
            ax.set_yscale("log")
    fig.suptitle(f"Final {evaluation} per task (mean ± std over seeds)", fontsize=12)
    adjust(fig, bottom=label_h + 0.1, hspace=(label_h + 0.6) / 3.0)
    return fig, f"Each method's final {evaluation} per task; error bars are one std over seeds."


def _front(points: list[tuple[float, float]], hib: tuple[bool, bool]) -> list[tuple[float, float]]:
    """The non-dominated points (sorted by x) under the orientation ``hib``."""

    def better_eq(p: tuple[float, float], q: tuple[float, float]) -> bool:
        return all((pv >= qv) if h else (pv <= qv) for pv, qv, h in zip(p, q, hib, strict=True))

    front = [p for p in points if not any(q != p and better_eq(q, p) for q in points)]
    return sorted(set(front))


def pareto(data: RunData, styles: dict[str, Style]) -> tuple[Any, str] | None:
    labels, table, hib, evaluation = _metric_table(data)
    tasks = data.tasks
    shown = [x for x in labels if label_kind(x) != "single"]
    if len(tasks) < 2 or len(shown) < 2:
        return None
    rows = (data.summary or {}).get("comparison", {}).get("rows") or []
    dominated = {r["label"] for r in rows if r.get("dominated_by")}
    combos = [(i, j) for i in range(len(tasks)) for j in range(i + 1, len(tasks))][:6]
    fig, axes = _grid(len(combos), size=(4.6, 4.0))
    for ax, (i, j) in zip(axes, combos, strict=True):
        ta, tb = tasks[i], tasks[j]
        sweep_pts, seen = [], [False]
        for x in shown:
            cell = table.get(x, {})
            if ta not in cell or tb not in cell:
                continue
            (ma, sa), (mb, sb) = cell[ta], cell[tb]
            st = styles.get(x, Style(SWEEP_COLOR))
            if label_kind(x) == "sweep":
                sweep_pts.append((ma, mb))
                ax.scatter(
                    [ma],
                    [mb],
                    color=SWEEP_COLOR,
                    marker="s",
                    s=22,
                    zorder=2,
                    label=_legend_label(x, seen),
                )
            else:  # hollow: a sweep point Pareto-dominates this method
                ax.errorbar(
                    [ma],
                    [mb],
                    xerr=[sa],
                    yerr=[sb],
                    fmt="o",
                    color=st.color,
                    mfc="white" if x in dominated else st.color,
                    mew=2,
                    ms=7,
                    capsize=2,
                    zorder=3,
                    label=x,
                )
        if len(sweep_pts) >= 2:
            fx, fy = zip(*_front(sweep_pts, (hib.get(ta, False), hib.get(tb, False))), strict=True)
            ax.plot(fx, fy, color="#777777", ls="--", lw=1.2, zorder=1, label="sweep front")
        ax.set_xlabel(f"{ta} {evaluation} ({'↑' if hib.get(ta) else '↓'} better)")
        ax.set_ylabel(f"{tb} {evaluation} ({'↑' if hib.get(tb) else '↓'} better)")
        ax.grid(alpha=0.3)
    fig.suptitle("Task trade-off: each method vs the linear-scalarization sweep", fontsize=12)
    _legend(fig, axes)
    return fig, (
        "Final metric of one task against another (mean ± std over seeds); the dashed "
        "line joins the sweep points no other sweep point dominates; a hollow marker is "
        "a method that a sweep point Pareto-dominates."
    )


def _whole_pairs(data: RunData) -> pd.DataFrame | None:
    pairs = data.pairs
    if pairs is None or pairs.empty:
        return None
    whole = pairs[pairs["layer"] == ALL_LAYERS]
    return whole if not whole.empty else None


def conflict_over_training(data: RunData, styles: dict[str, Style]) -> tuple[Any, str] | None:
    whole = _whole_pairs(data)
    if whole is None:
        return None
    whole = whole.assign(conflict=(whole["cosine"] < 0).astype(float))
    labels = [x for x in styles if x in set(whole["method"]) and label_kind(x) != "single"]
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(9, 6.2), sharex=True)
    one = len(labels) == 1
    series: list[tuple[str, pd.DataFrame, Style]] = []
    if one:  # one run: a line per task pair says more than one line for the run
        sub = whole[whole["method"] == labels[0]]
        for k, ((a, b), g) in enumerate(sub.groupby(["a", "b"], sort=False)):
            series.append((f"{a} – {b}", g, Style(TASK_COLORS[k % len(TASK_COLORS)])))
    else:
        seen = [False]
        for x in labels:
            series.append((_legend_label(x, seen), whole[whole["method"] == x], styles[x]))
    for name, g, st in series:
        per_step = g.groupby("step", sort=True)[["conflict", "cosine"]].mean()
        for ax, col in ((ax1, "conflict"), (ax2, "cosine")):
            y = rolling(per_step[col])
            x, v = downsample(y.index.to_numpy(float), y.to_numpy(float))
            ax.plot(
                x, v, color=st.color, ls=st.linestyle, lw=st.linewidth, alpha=st.alpha, label=name
            )
    ax1.set_ylabel("conflict rate\n(share of cosine < 0)")
    ax1.set_ylim(-0.03, 1.03)
    ax2.set_ylabel("mean gradient cosine")
    ax2.axhline(0, color="black", lw=0.8)
    ax2.set_xlabel("step")
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
    what = "per task pair" if one else "per method, mean over task pairs and seeds"
    ax1.set_title(f"Gradient conflict over training ({what}, rolling mean)", fontsize=11)
    ax1.legend(fontsize=8, ncol=min(4, len(series)), loc="best")
    adjust(fig, left=0.95, top=0.4, bottom=0.55, hspace=0.1)
    return fig, (
        "Conflict rate and mean cosine of the raw task gradients on the whole shared "
        "trunk, smoothed over 5% of the instrumented steps."
    )


def grad_norm_ratio(data: RunData, styles: dict[str, Style]) -> tuple[Any, str] | None:
    steps = data.steps
    if steps is None or steps.empty:
        return None
    cols = [f"grad_norm/{t}" for t in data.tasks]
    inst = steps[steps["instrumented"] == 1]
    norms = inst[cols].to_numpy(float)
    if norms.size == 0 or len(cols) < 2:
        return None
    with np.errstate(all="ignore"):
        lo = np.nanmin(np.where(norms > 0, norms, np.nan), axis=1)
        ratio_v = np.nanmax(norms, axis=1) / lo
    inst = inst.assign(ratio=ratio_v)
    labels = [x for x in styles if x in set(inst["method"]) and label_kind(x) != "single"]
    if not labels or not np.isfinite(ratio_v).any():
        return None
    one = len(labels) == 1
    fig, axes = plt.subplots(1, 2 if one else 1, figsize=(11 if one else 9, 3.8), squeeze=False)
    ax = axes[0][0]
    seen = [False]
    for x in labels:
        y = rolling(_seed_mean(inst[inst["method"] == x], "ratio").dropna())
        px, pv = downsample(y.index.to_numpy(float), y.to_numpy(float))
        st = styles[x]
        ax.plot(
            px,
            pv,
            color=st.color,
            ls=st.linestyle,
            lw=st.linewidth,
            alpha=st.alpha,
            label=_legend_label(x, seen),
        )
    ax.axhline(1, color="black", lw=0.8)
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("largest / smallest task grad norm")
    ax.set_title("Gradient-norm ratio over training", fontsize=11)
    ax.grid(alpha=0.3, which="both")
    if not one:
        ax.legend(fontsize=8, ncol=min(4, len(labels)))
    else:  # one run: also each task's norm
        ax2 = axes[0][1]
        sub = inst[inst["method"] == labels[0]]
        for k, t in enumerate(data.tasks):
            y = rolling(_seed_mean(sub, f"grad_norm/{t}").dropna())
            px, pv = downsample(y.index.to_numpy(float), y.to_numpy(float))
            ax2.plot(px, pv, color=TASK_COLORS[k % len(TASK_COLORS)], label=f"task {t}")
        ax2.set_yscale("log")
        ax2.set_xlabel("step")
        ax2.set_ylabel("grad norm on shared params")
        ax2.set_title("Task gradient norms", fontsize=11)
        ax2.grid(alpha=0.3, which="both")
        ax2.legend(fontsize=8)
    adjust(fig, left=0.85, top=0.4, bottom=0.55, wspace=0.28)
    return fig, (
        "How much harder the strongest task pulls the shared parameters than the "
        "weakest (1 = balanced), smoothed over 5% of the instrumented steps."
    )


def layer_heatmap(data: RunData, styles: dict[str, Style]) -> tuple[Any, str] | None:
    summary = data.summary or {}
    layers = summary.get("layers") or []
    run = reference_run(summary)
    if run is None or len(layers) < 2 or not run.get("pairs"):
        return None
    pairs = run["pairs"]
    grid = np.full((len(layers), len(pairs)), np.nan)
    for j, p in enumerate(pairs):
        for i, layer in enumerate(layers):
            v = ((p.get("layers") or {}).get(layer) or {}).get("conflict_rate")
            if v is not None:
                grid[i, j] = v
    if np.isnan(grid).all():
        return None
    name_w = 0.55 + 0.055 * max(len(x) for x in layers)  # inches for the layer names
    h = min(14.0, 1.8 + 0.32 * len(layers))
    w = min(16.0, name_w + 1.2 + max(4.5, 1.0 * len(pairs)))
    fig, ax = plt.subplots(figsize=(w, h))
    im = ax.imshow(grid, cmap="Reds", vmin=0, vmax=1, aspect="auto")
    ax.set_xticks(
        range(len(pairs)),
        [f"{p['a']}–{p['b']}" for p in pairs],
        rotation=30 if len(pairs) > 4 else 0,
        ha="right" if len(pairs) > 4 else "center",
        fontsize=8,
    )
    ax.set_yticks(range(len(layers)), layers, fontsize=8 if len(layers) < 30 else 6)
    if grid.size <= 300:
        for i in range(grid.shape[0]):
            for j in range(grid.shape[1]):
                if not np.isnan(grid[i, j]):
                    ax.text(
                        j,
                        i,
                        f"{grid[i, j]:.0%}",
                        ha="center",
                        va="center",
                        fontsize=7,
                        color="white" if grid[i, j] > 0.6 else "black",
                    )
    ax.set_xlabel("task pair")
    ax.set_ylabel("shared layer (input side on top)")
    bar = fig.add_axes((1 - 0.75 / w, 0.5 / h + 0.05, 0.15 / w, 1 - 0.9 / h - 0.1))
    fig.colorbar(im, cax=bar, label="conflict rate")
    who = f"run {run.get('method')}, seed {run.get('seed')}"
    ax.set_title(f"Conflict rate per shared layer and task pair ({who})", fontsize=11)
    rotated = 0.06 * max(len(p["a"]) + len(p["b"]) + 1 for p in pairs) * 0.5
    adjust(fig, left=name_w, top=0.4, bottom=0.5 + (rotated if len(pairs) > 4 else 0.0), right=1.1)
    top = layer_scores(summary)[:1]
    note = f" The most conflicted layer is '{top[0]['layer']}'." if top else ""
    return (
        fig,
        "Share of instrumented steps where the pair's gradients on that layer have a "
        "negative cosine." + note,
    )


def weight_trajectories(data: RunData, styles: dict[str, Style]) -> tuple[Any, str] | None:
    steps = data.steps
    if steps is None or steps.empty:
        return None
    tasks = data.tasks
    cols = [f"weight/{t}" for t in tasks]
    movers = []
    for x in styles:
        if label_kind(x) != "method":
            continue
        w = steps.loc[steps["method"] == x, cols].to_numpy(float)
        if w.size and np.isfinite(w).any() and np.nanmax(np.nanstd(w, axis=0)) > 1e-9:
            movers.append(x)
    if not movers:
        return None
    movers = movers[:9]
    fig, axes = _grid(len(movers), size=(4.6, 3.2))
    for ax, x in zip(axes, movers, strict=True):
        sub = steps[steps["method"] == x]
        for k, t in enumerate(tasks):
            y = _seed_mean(sub, f"weight/{t}").dropna()
            px, pv = downsample(y.index.to_numpy(float), y.to_numpy(float))
            ax.plot(px, pv, color=TASK_COLORS[k % len(TASK_COLORS)], label=f"task {t}")
        ax.set_title(x, fontsize=10, color=styles[x].color, fontweight="bold")
        ax.set_xlabel("step")
        ax.set_ylabel("task weight")
        ax.grid(alpha=0.3)
    fig.suptitle("Task-weight trajectories (methods whose weights change)", fontsize=12)
    _legend(fig, axes)
    return fig, "The weight each method gave each task's loss, per step (mean over seeds)."


def step_time(data: RunData, styles: dict[str, Style]) -> tuple[Any, str] | None:
    summary = data.summary or {}
    runs = [r for r in summary.get("runs") or [] if r.get("step_time_ms_median") is not None]
    labels = [x for x in styles if label_kind(x) != "sweep"]
    by: dict[str, list[float]] = {}
    for r in runs:
        if r["method"] in labels:
            by.setdefault(r["method"], []).append(float(r["step_time_ms_median"]))
    if len(by) >= 2:
        names = [x for x in labels if x in by]
        med = [float(np.median(by[x])) for x in names]
        fig, ax = plt.subplots(figsize=(8, 0.45 * len(names) + 1.4))
        ax.barh(
            range(len(names)),
            med,
            color=[styles[x].color for x in names],
            edgecolor="black",
            linewidth=0.4,
        )
        for k, x in enumerate(names):
            ax.plot(by[x], [k] * len(by[x]), "k|", ms=10)
        ax.set_yticks(range(len(names)), names, fontsize=8)
        ax.invert_yaxis()
        ax.set_xlabel("median step time (ms)")
        ax.set_title(
            "Training step time per method (bar: median over seeds; ticks: seeds)", fontsize=11
        )
        ax.grid(axis="x", alpha=0.3)
        adjust(fig, left=0.3 + 0.06 * max(len(x) for x in names), top=0.4, bottom=0.55)
        return fig, "Median wall time of a training step (instrumented steps included)."
    steps = data.steps
    if steps is None or steps.empty:
        return None
    fig, ax = plt.subplots(figsize=(9, 3.4))
    for flag, name, color in ((0, "plain step", "#1f77b4"), (1, "instrumented step", "#d62728")):
        sub = steps[steps["instrumented"] == flag]
        if not sub.empty:
            px, pv = downsample(sub["step"].to_numpy(float), sub["time_ms"].to_numpy(float))
            ax.plot(px, pv, ".", ms=3, color=color, label=name)
    med = float(np.median(steps["time_ms"]))
    ax.axhline(med, color="black", lw=0.8, ls="--", label=f"median {med:.3g} ms")
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("step time (ms)")
    ax.set_title("Training step time", fontsize=11)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    adjust(fig, left=0.8, top=0.4, bottom=0.55)
    return fig, "Wall time of every training step; instrumented steps compute the Jacobian."


PlotFn = Callable[[RunData, dict[str, Style]], "tuple[Any, str] | None"]

# name, title, function — in the order the report shows them
PLOTS: list[tuple[str, str, PlotFn]] = [
    ("loss_curves", "Training loss per task", loss_curves),
    ("final_metrics", "Final metric per task", final_metrics),
    ("pareto", "Task trade-off (Pareto)", pareto),
    ("conflict", "Gradient conflict over training", conflict_over_training),
    ("grad_norm_ratio", "Gradient-norm ratio over training", grad_norm_ratio),
    ("layer_heatmap", "Conflict per shared layer", layer_heatmap),
    ("weights", "Task-weight trajectories", weight_trajectories),
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
