"""The report's tables, built once as plain text cells and rendered three ways.

:class:`TableData` holds a title, headers and string cells; :func:`task_data`,
:func:`pair_data`, :func:`layer_data`, :func:`preview_data` and
:func:`runs_data` build them from a ``summary.json`` dict. :func:`comparison_data` is in
:mod:`mtldiag.report.comparison`. The Rich renderables
(:func:`task_table` and friends) are what the terminal shows; :mod:`mtldiag.report.html`
and :mod:`mtldiag.report.markdown` render the same :class:`TableData`.
"""

from __future__ import annotations

from typing import Any

from mtldiag.analysis.conflicts import is_conflict
from mtldiag.analysis.layers import rank_layers
from mtldiag.report.cells import (
    DASH,
    TableData,
    count,
    is_number,
    num,
    pct,
    pct_interval,
    ratio,
    signed,
)
from mtldiag.rundir.schema import gradient_space, reference_run, run_space

# -- which run the one-run tables describe -------------------------------------------------


def _reference(summary: dict[str, Any]) -> dict[str, Any]:
    """The run the one-run tables describe: the diagnosis' reference run (empty if none)."""
    run = reference_run(summary.get("runs") or [], summary.get("tasks") or [])
    return dict(run) if run is not None else {}


def _run_title(summary: dict[str, Any], run: dict[str, Any]) -> str:
    if summary.get("kind") == "compare":
        return f" — run {run.get('method')}, seed {run.get('seed')}"
    return ""


# -- table builders ------------------------------------------------------------------------


def _space_title(summary: dict[str, Any]) -> str:
    """A note in the title when the numbers are representation-space ones."""
    if gradient_space(summary) == "shared representation":
        return " (gradients w.r.t. the shared representation z)"
    return ""


def task_data(summary: dict[str, Any]) -> TableData:
    """Per task: mean loss, its ratio to the smallest, final loss, mean gradient norm, ratio."""
    run = _reference(summary)
    tasks = summary.get("tasks") or []
    loss = run.get("loss_mean") or {}
    final = run.get("final_loss") or {}
    norm = run.get("grad_norm_mean") or {}
    weight = run.get("weight_mean") or {}

    def smallest(d: dict[str, Any]) -> float | None:
        vals = [v for v in d.values() if is_number(v) and v > 0]
        return min(vals) if vals else None

    lmin, nmin = smallest(loss), smallest(norm)
    show_w = any(is_number(weight.get(t)) and abs(weight[t] - 1.0) > 1e-9 for t in tasks)
    headers = ["task", "mean loss", "loss ratio", "final loss", "mean grad norm", "norm ratio"]
    if show_w:
        headers.append("mean weight")
    rows = []
    for t in tasks:
        lv, nv = loss.get(t), norm.get(t)
        row = [
            t,
            num(lv),
            ratio(lv / lmin) if is_number(lv) and lmin else DASH,
            num(final.get(t)),
            num(nv),
            ratio(nv / nmin) if is_number(nv) and nmin else DASH,
        ]
        if show_w:
            row.append(num(weight.get(t)))
        rows.append(row)
    return TableData(
        title="Tasks" + _space_title(summary) + _run_title(summary, run),
        headers=headers,
        rows=rows,
        align=["l"] + ["r"] * (len(headers) - 1),
        notes=["ratios are to the smallest task; grad norms are over the shared parameters"],
    )


def pair_data(summary: dict[str, Any]) -> TableData:
    """Per task pair: mean cosine, conflict rate (with its n and interval), cosine on
    conflicting steps, mean GMS."""
    run = _reference(summary)
    pairs = run.get("pairs") or []
    with_n = any(is_number(p.get("conflict_rate_n")) for p in pairs)
    rows = [
        [p["a"], p["b"], signed(p.get("cosine_mean")), pct(p.get("conflict_rate"))]
        + [f"{count(p.get('conflict_rate_n'))} ({pct_interval(p.get('conflict_rate_ci95'))})"]
        * with_n
        + [signed(p.get("conflict_cosine_mean")), num(p.get("gms_mean"), 3)]
        for p in pairs
    ]
    headers = ["task a", "task b", "mean cosine", "conflict rate"]
    headers += ["n (95% interval)"] * with_n + ["cosine when conflicting", "mean GMS"]
    notes = [
        "conflict rate = share of instrumented steps with cosine < 0; "
        "GMS = gradient magnitude similarity (Yu et al. 2020)"
    ]
    if with_n:
        notes.append("n = instrumented steps the rate rests on; its Wilson 95% interval")
    return TableData(
        title=(
            "Task pairs (shared representation z)"
            if gradient_space(summary) == "shared representation"
            else "Task pairs (whole shared trunk)"
        )
        + _run_title(summary, run),
        headers=headers,
        rows=rows,
        align=["l", "l"] + ["r"] * (len(headers) - 2),
        notes=notes,
        marked={i for i, p in enumerate(pairs) if is_conflict(p)},
    )


def layer_data(summary: dict[str, Any], top: int | None = 5) -> TableData:
    """The most conflicted shared layers of the reference run (:func:`rank_layers`' order)."""
    layers = summary.get("layers") or []
    sizes = summary.get("layer_params")
    scores = rank_layers(_reference(summary), layers, sizes)
    shown = scores[:top] if top else scores
    rows = [
        [
            d.layer,
            f"{d.depth}/{len(layers)}",
            pct(d.mean_rate),
            "–".join(d.worst_pair),
            pct(d.worst_rate),
            signed(d.worst_cosine),
        ]
        + [f"{count(d.params)} ({pct(d.share)})" if d.params else DASH] * bool(sizes)
        for d in shown
    ]
    title = "Most conflicted shared layers"
    if top and len(scores) > top:
        title += f" (top {top} of {len(scores)})"
    headers = ["layer", "depth", "mean conflict rate", "worst pair", "its conflict rate"]
    headers += ["its mean cosine"] + ["parameters (share)"] * bool(sizes)
    notes = ["depth 1 is the shared layer nearest the input"]
    if sizes:
        notes.append(
            "ranked by the worst pair's mean cosine beyond what noise gives a layer of its "
            "size (±2/√(parameters · steps)), then by size"
        )
    return TableData(
        title=title,
        headers=headers,
        rows=rows,
        align=["l", "r", "r", "l", "r", "r"] + ["r"] * bool(sizes),
        notes=notes,
    )


def run_label(summary: dict[str, Any], run: dict[str, Any]) -> str:
    """``pcgrad seed 1`` in a comparison, where several runs share a method; else ``""``."""
    if summary.get("kind") == "compare":
        return f"{run.get('method')} seed {run.get('seed')}"
    return ""


def run_warnings(summary: dict[str, Any]) -> list[str]:
    """Every run's ``warnings`` (e.g. Nash-MTL solves that failed), one line each.

    In a comparison each line starts with its run (``nash_mtl seed 1: ...``).
    """
    out = []
    for r in summary.get("runs") or []:
        label = run_label(summary, r)
        out += [f"{label}: {w}" if label else str(w) for w in r.get("warnings") or []]
    return out


def runs_data(summary: dict[str, Any]) -> TableData:
    """Every (method, seed) run: status, its warnings (if any run has one), steps, final
    losses, error."""
    tasks = summary.get("tasks") or []
    runs = summary.get("runs") or []
    warn_col = any(r.get("warnings") for r in runs)
    space_col = summary.get("jacobian") == "mixed"  # say each run's space when they differ
    rows = []
    for r in runs:
        final = r.get("final_loss") or {}
        rows.append(
            [str(r.get("method")), str(r.get("seed")), str(r.get("status"))]
            + [run_space(summary, r)] * space_col
            + ["; ".join(map(str, r.get("warnings") or []))] * warn_col
            + [str(r.get("steps")), str(r.get("instrumented_steps"))]
            + [num(final.get(t)) for t in tasks]
            + [num(r.get("step_time_ms_median"), 3), r.get("error") or ""]
        )
    return TableData(
        title="Runs",
        headers=["method", "seed", "status"]
        + ["gradients w.r.t."] * space_col
        + ["warnings"] * warn_col
        + ["steps", "instrumented"]
        + [f"final loss {t}" for t in tasks]
        + ["step ms", "error"],
        rows=rows,
        align=["l", "r", "l"]
        + ["l"] * (space_col + warn_col)
        + ["r", "r"]
        + ["r"] * len(tasks)
        + ["r", "l"],
        marked={i for i, r in enumerate(runs) if r.get("status") != "ok" or r.get("warnings")},
    )


PREVIEW_HEADING = "Preview: what each gradient method would do on these steps"
PREVIEW_NOTE = (
    "all ↓: share of steps where the update lowers every task's loss (g_iᵀd > 0 for all i); "
    "gain: mean g_iᵀd/‖g_i‖ (on each method's own scale); angle: to the plain sum (ew)"
)


def preview_data(summary: dict[str, Any], heading: bool = False) -> TableData | None:
    """``profile --preview``: per Gramian method, on the recorded steps (``None`` without).

    The share of steps where its update lowers every task's loss to first order, each task's
    mean first-order gain and the angle to the plain sum (``ew``, the first row). The
    terminal title says how many steps; with ``heading`` (the report files) the title is
    :data:`PREVIEW_HEADING` and the step count moves to the notes.
    """
    pv = summary.get("preview")
    if not pv or not pv.get("methods"):
        return None
    tasks = [str(t) for t in pv.get("tasks") or summary.get("tasks") or []]
    n = pv.get("steps")
    rows = []
    for r in pv["methods"]:
        rate = r.get("all_decrease_rate")
        angle = r.get("angle_to_sum_mean")
        gains = r.get("gain_mean") or {}
        rows.append(
            [str(r.get("method")), f"{100 * rate:.0f}%" if is_number(rate) else DASH]
            + [f"{gains[t]:.3g}" if is_number(gains.get(t)) else DASH for t in tasks]
            + [f"{angle:.1f}°" if is_number(angle) else DASH]
        )
    notes = [PREVIEW_NOTE]
    if heading:
        # Every step with a Jacobian: the instrumented ones, or all under a gradient method.
        notes = [
            f"on the {n} steps of this run whose Jacobian was computed, to first order, "
            "without training along them; weighting methods and GradDrop are not "
            "previewed",
            *notes,
        ]
    return TableData(
        title=PREVIEW_HEADING
        if heading
        else f"Preview on the {n} steps with a Jacobian (first order, no training)",
        headers=["method", "all ↓", *(f"gain {t}" for t in tasks), "angle"],
        rows=rows,
        align=["l"] + ["r"] * (len(tasks) + 2),
        notes=notes,
    )
