"""Plots of a comparison's final metrics: per task, and one task against another (Pareto)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from mtldiag.analysis.stats import t_quantile
from mtldiag.report.plots.style import (
    SINGLE_COLOR,
    SWEEP_COLOR,
    Style,
    adjust,
    grid,
    legend,
    legend_label,
)
from mtldiag.rundir.load import RunData
from mtldiag.rundir.schema import label_kind, single_label


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
            table.setdefault(single_label(t), {})[t] = (float(c["mean"]), float(c.get("std") or 0))
    evaluation = comp.get("evaluation") or summary.get("evaluation") or "metric"
    return list(table), table, hib, evaluation


def _half_ci95(std: float, n: int) -> float | None:
    """Half the Student-t 95 % interval of a mean of ``n`` seeds with sample std ``std``."""
    return t_quantile(n - 1) * std / math.sqrt(n) if n > 1 else None


def final_metrics(data: RunData, styles: dict[str, Style]) -> tuple[Any, str] | None:
    labels, table, hib, evaluation = _metric_table(data)
    shown = [x for x in labels if label_kind(x) != "sweep"]
    if len(shown) < 2:
        return None
    seeds = {
        r["label"]: int(r.get("seeds") or 0)
        for r in ((data.summary or {}).get("comparison") or {}).get("rows") or []
    }
    tasks = data.tasks
    name_w = 0.4 + 0.065 * max(len(x) for x in shown)
    fig, axes = grid(len(tasks), max_cols=3, size=(3.4 + name_w, 0.34 * len(shown) + 1.3))
    for ax, t in zip(axes, tasks, strict=True):
        names = [x for x in shown if t in table.get(x, {})]
        for k, x in enumerate(names):
            mean, std = table[x][t]
            half = _half_ci95(std, seeds.get(x, 0))
            color = styles.get(x, Style(SINGLE_COLOR)).color
            if half is not None:
                ax.plot([mean - half, mean + half], [k, k], color=color, lw=2)
            ax.plot([mean], [k], "o", color=color, mec="black", mew=0.5, ms=6)
        ax.set_yticks(range(len(names)), names, fontsize=8)
        ax.invert_yaxis()
        ax.margins(x=0.08)  # the axis fits the data: no bar from 0 hiding 2.236 vs 2.276
        ax.set_title(f"task {t} ({'higher' if hib.get(t) else 'lower'} is better)", fontsize=10)
        ax.set_xlabel(evaluation)
        ax.grid(axis="x", alpha=0.3)
    fig.suptitle(f"Final {evaluation} per task (mean and 95% interval over seeds)", fontsize=12)
    adjust(fig, left=name_w + 0.2, bottom=0.6, wspace=0.25 + name_w / 3.4)
    return fig, (
        f"Each method's final {evaluation} per task: the dot is the mean over seeds, the bar "
        "its Student-t 95% interval (none with one seed); each axis spans that task's values."
    )


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
    fig, axes = grid(len(combos), size=(4.6, 4.0))
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
                ax.annotate(  # which weights: "0.25,0.75"
                    x.split(":", 1)[1],
                    (ma, mb),
                    xytext=(4, -8),
                    textcoords="offset points",
                    fontsize=6,
                    color="#555555",
                )
                ax.scatter(
                    [ma],
                    [mb],
                    color=SWEEP_COLOR,
                    marker="s",
                    s=22,
                    zorder=2,
                    label=legend_label(x, seen),
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
    has_sweep = any(label_kind(x) == "sweep" for x in shown)
    title = "Task trade-off: each method" + (
        " vs the linear-scalarization sweep" if has_sweep else " (mean ± std over seeds)"
    )
    fig.suptitle(title, fontsize=12)
    legend(fig, axes)
    caption = "Final metric of one task against another (mean ± std over seeds)."
    if has_sweep:
        caption += (
            " Grey squares are sweep points, labelled with their loss weights; the dashed line "
            "joins those no other sweep point dominates; a hollow marker is a method that a "
            "sweep point Pareto-dominates."
        )
    return fig, caption
