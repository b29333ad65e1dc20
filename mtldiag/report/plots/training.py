"""Plots over training, from steps.csv and pairs.csv: losses, conflict, gradient-norm ratio,
task weights and step time."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from mtldiag.analysis.numbers import sig
from mtldiag.engine.gramian import ALL_LAYERS
from mtldiag.methods import registry
from mtldiag.methods.base import MethodError
from mtldiag.report.plots.style import (
    TASK_COLORS,
    Style,
    adjust,
    downsample,
    grid,
    legend,
    legend_label,
    plt,
    rolling,
    seed_mean,
    wants_log,
)
from mtldiag.rundir.load import RunData
from mtldiag.rundir.schema import label_kind, single_label


def loss_curves(data: RunData, styles: dict[str, Style]) -> tuple[Any, str] | None:
    steps = data.steps
    if steps is None or steps.empty:
        return None
    tasks = data.tasks
    labels = [x for x in styles if x in set(steps["method"])]
    fig, axes = grid(len(tasks))
    n_seeds = steps.groupby("method")["seed"].nunique().max()
    for ax, t in zip(axes, tasks, strict=True):
        col, curves, seen = f"loss/{t}", [], [False]
        for label in labels:
            if label_kind(label) == "single" and label != single_label(t):
                continue
            sub = steps[steps["method"] == label]
            y = seed_mean(sub, col).dropna()
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
                label=legend_label(label, seen),
            )
            curves.append(v)
        if wants_log(curves):
            ax.set_yscale("log")
        ax.set_title(f"task {t}", fontsize=10)
        ax.set_xlabel("step")
        ax.set_ylabel("training loss" + (" (log)" if ax.get_yscale() == "log" else ""))
        ax.grid(alpha=0.3)
    seeds = f"mean over {n_seeds} seeds" if n_seeds > 1 else "raw, unweighted"
    fig.suptitle(f"Training loss per task ({seeds})", fontsize=12)
    legend(fig, axes)
    return fig, "Raw (unweighted) task losses over training, one colour per method."


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
            series.append((legend_label(x, seen), whole[whole["method"] == x], styles[x]))
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
        f"Conflict rate and mean cosine of the raw task gradients {_space_words(data)}, "
        "smoothed over 5% of the instrumented steps."
    )


def _space_words(data: RunData) -> str:
    """Where the plotted gradients live: the trunk's parameters, z, or (mixed) each run's."""
    summary = data.summary or {}
    words = {
        "parameters": "on the whole shared trunk",
        "representation": "w.r.t. the shared representation z",
    }
    space = summary.get("jacobian")
    if space != "mixed":
        return words["representation" if space == "representation" else "parameters"]
    default = (summary.get("compare") or {}).get("wrt") or "parameters"
    other = "parameters" if default == "representation" else "representation"
    return f"{words[default]}, or {words[other]} for the runs labelled @{other}"


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
        y = rolling(seed_mean(inst[inst["method"] == x], "ratio").dropna())
        px, pv = downsample(y.index.to_numpy(float), y.to_numpy(float))
        st = styles[x]
        ax.plot(
            px,
            pv,
            color=st.color,
            ls=st.linestyle,
            lw=st.linewidth,
            alpha=st.alpha,
            label=legend_label(x, seen),
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
            y = rolling(seed_mean(sub, f"grad_norm/{t}").dropna())
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


def weight_trajectories(data: RunData, styles: dict[str, Style]) -> tuple[Any, str] | None:
    steps = data.steps
    if steps is None or steps.empty:
        return None
    tasks = data.tasks
    cols = [f"weight/{t}" for t in tasks]
    movers = []
    for x in styles:
        # Loss weights mean something only for a weighting method; a Gramian method's
        # "weights" (PCGrad's 80) are not loss weights and are not drawn as such.
        if label_kind(x) != "method" or not _weighting(x):
            continue
        w = steps.loc[steps["method"] == x, cols].to_numpy(float)
        if w.size and np.isfinite(w).any() and np.nanmax(np.nanstd(w, axis=0)) > 1e-9:
            movers.append(x)
    if not movers:
        return None
    movers = movers[:9]
    fig, axes = grid(len(movers), size=(4.6, 3.2))
    for ax, x in zip(axes, movers, strict=True):
        sub = steps[steps["method"] == x]
        for k, t in enumerate(tasks):
            y = seed_mean(sub, f"weight/{t}").dropna()
            px, pv = downsample(y.index.to_numpy(float), y.to_numpy(float))
            ax.plot(px, pv, color=TASK_COLORS[k % len(TASK_COLORS)], label=f"task {t}")
        ax.set_title(x, fontsize=10, color=styles[x].color, fontweight="bold")
        ax.set_xlabel("step")
        ax.set_ylabel("task weight")
        ax.grid(alpha=0.3)
    fig.suptitle("Loss-weight trajectories (weighting methods whose weights change)", fontsize=12)
    legend(fig, axes)
    return fig, (
        "The weight each loss-weighting method gave each task's loss, per step (mean over "
        "seeds); gradient methods (PCGrad, MGDA, ...) do not weight losses and are not shown."
    )


def _weighting(label: str) -> bool:
    try:
        return registry.lookup(label.partition(":")[0]).family == "weighting"
    except MethodError:
        return False


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
    ax.axhline(med, color="black", lw=0.8, ls="--", label=f"median {sig(med)} ms")
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("step time (ms)")
    ax.set_title("Training step time", fontsize=11)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    adjust(fig, left=0.8, top=0.4, bottom=0.55)
    return fig, "Wall time of every training step; instrumented steps compute the Jacobian."
