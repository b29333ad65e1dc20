"""The decision plot: each row's Δm% against the reference, paired by seed, with its 95 %
interval — the first plot of a comparison report."""

from __future__ import annotations

from typing import Any

from mtldiag.analysis.numbers import is_number, sig
from mtldiag.report.plots.style import SWEEP_COLOR, Style, adjust, plt
from mtldiag.rundir.load import RunData

REFERENCE_TEXT = {"single_task": "the single-task models", "ew": "equal weighting (ew)"}


def forest(data: RunData, styles: dict[str, Style]) -> tuple[Any, str] | None:
    comp = (data.summary or {}).get("comparison") or {}
    rows = [r for r in comp.get("rows") or [] if is_number(r.get("delta_m"))]
    if len(rows) < 2:
        return None
    ref = comp.get("reference")
    names = [r["label"] for r in rows]
    fig, ax = plt.subplots(figsize=(8.5, 0.42 * len(rows) + 1.7))
    for k, r in enumerate(rows):
        color = styles.get(r["label"], Style(SWEEP_COLOR)).color
        ci = r.get("delta_m_ci95")
        if ci and all(map(is_number, ci)):
            ax.plot(ci, [k, k], color=color, lw=2.2, solid_capstyle="butt")
        seeds = [v for v in (r.get("delta_m_per_seed") or {}).values() if is_number(v)]
        ax.plot(seeds, [k] * len(seeds), "|", color="black", ms=9, alpha=0.6)
        ax.plot([r["delta_m"]], [k], "o", color=color, ms=7, mec="black", mew=0.6)
        ax.annotate(
            sig(r["delta_m"], sign=True),
            (r["delta_m"], k),
            xytext=(0, 7),
            textcoords="offset points",
            fontsize=7,
            ha="center",
        )
    ax.axvline(0.0, color="black", lw=0.9, ls="--")
    ax.set_yticks(range(len(names)), names, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel(f"Δm% against {REFERENCE_TEXT.get(ref, 'the reference')} (negative = better)")
    ax.set_title("Δm% per method, paired by seed: mean, 95% interval, seeds", fontsize=11)
    ax.grid(axis="x", alpha=0.3)
    adjust(fig, left=0.35 + 0.065 * max(len(x) for x in names), top=0.45, bottom=0.6)
    return fig, (
        "Each row's Δm% against the same seed's reference: the dot is the mean over seeds, the "
        "bar its Student-t 95% interval (none with one seed), the ticks the seeds. A bar that "
        "crosses the dashed line at 0 is not distinguishable from the reference."
    )
