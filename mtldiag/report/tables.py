"""The report's tables, built once as plain text cells and rendered three ways.

:class:`TableData` holds a title, headers and string cells; :func:`task_data`,
:func:`pair_data`, :func:`layer_data`, :func:`comparison_data`, :func:`preview_data` and
:func:`runs_data` build them from a ``summary.json`` dict. The Rich renderables
(:func:`task_table` and friends) are what the terminal shows; :mod:`mtldiag.report.html`
and :mod:`mtldiag.report.markdown` render the same :class:`TableData`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from rich import box
from rich.console import Console, Group, RenderableType
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

from mtldiag.analysis.diagnose import CONFLICT_WARN, MEAN_COSINE_CONFLICT, WEAK_COSINE

DASH = "–"


@dataclass
class TableData:
    """A table as text: ``align`` is ``"l"`` or ``"r"`` per column; ``marked`` rows stand out."""

    title: str
    headers: list[str]
    rows: list[list[str]]
    align: list[str]
    notes: list[str] = field(default_factory=list)
    marked: set[int] = field(default_factory=set)


# -- number formatting ---------------------------------------------------------------------


def _ok(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def num(x: Any, digits: int = 4) -> str:
    return f"{x:.{digits}g}" if _ok(x) else DASH


def ratio(x: Any) -> str:
    return f"{x:.1f}×" if _ok(x) else DASH


def pct(x: Any) -> str:
    return f"{100 * x:.0f}%" if _ok(x) else DASH


def signed(x: Any) -> str:
    return f"{x:+.2f}" if _ok(x) else DASH


def mean_std(cell: Any, seeds: int = 2, std_digits: int = 2, sep: str = " ± ") -> str:
    if not isinstance(cell, dict) or not _ok(cell.get("mean")):
        return DASH
    if seeds > 1 and _ok(cell.get("std")):
        return f"{cell['mean']:.4g}{sep}{cell['std']:.{std_digits}g}"
    return f"{cell['mean']:.4g}"


# -- which run the one-run tables describe -------------------------------------------------


def reference_run(summary: dict[str, Any]) -> dict[str, Any] | None:
    """The run whose raw gradients the one-run tables describe.

    Profile: its only run. Compare: plain equal weighting (``ew``) when it ran, else the first
    run that trained every task — the same choice the diagnosis makes.
    """
    runs = summary.get("runs") or []
    tasks = summary.get("tasks") or []
    full = [r for r in runs if len(r.get("final_loss") or {}) >= len(tasks)]
    for pool in ([r for r in full if r.get("status") == "ok"], full, runs):
        if pool:
            return next((r for r in pool if r.get("method") == "ew"), pool[0])
    return None


def _run_title(summary: dict[str, Any], run: dict[str, Any]) -> str:
    if summary.get("kind") == "compare":
        return f" — run {run.get('method')}, seed {run.get('seed')}"
    return ""


# -- table builders ------------------------------------------------------------------------


def task_data(summary: dict[str, Any]) -> TableData:
    """Per task: mean loss, its ratio to the smallest, final loss, mean gradient norm, ratio."""
    run = reference_run(summary) or {}
    tasks = summary.get("tasks") or []
    loss = run.get("loss_mean") or {}
    final = run.get("final_loss") or {}
    norm = run.get("grad_norm_mean") or {}
    weight = run.get("weight_mean") or {}

    def smallest(d: dict[str, Any]) -> float | None:
        vals = [v for v in d.values() if _ok(v) and v > 0]
        return min(vals) if vals else None

    lmin, nmin = smallest(loss), smallest(norm)
    show_w = any(_ok(weight.get(t)) and abs(weight[t] - 1.0) > 1e-9 for t in tasks)
    headers = ["task", "mean loss", "loss ratio", "final loss", "mean grad norm", "norm ratio"]
    if show_w:
        headers.append("mean weight")
    rows = []
    for t in tasks:
        lv, nv = loss.get(t), norm.get(t)
        row = [
            t,
            num(lv),
            ratio(lv / lmin) if _ok(lv) and lmin else DASH,
            num(final.get(t)),
            num(nv),
            ratio(nv / nmin) if _ok(nv) and nmin else DASH,
        ]
        if show_w:
            row.append(num(weight.get(t)))
        rows.append(row)
    return TableData(
        title="Tasks" + _run_title(summary, run),
        headers=headers,
        rows=rows,
        align=["l"] + ["r"] * (len(headers) - 1),
        notes=["ratios are to the smallest task; grad norms are over the shared parameters"],
    )


def pair_data(summary: dict[str, Any]) -> TableData:
    """Per task pair: mean cosine, conflict rate, cosine on conflicting steps, mean GMS."""
    run = reference_run(summary) or {}
    rows = [
        [
            p["a"],
            p["b"],
            signed(p.get("cosine_mean")),
            pct(p.get("conflict_rate")),
            signed(p.get("conflict_cosine_mean")),
            num(p.get("gms_mean"), 3),
        ]
        for p in run.get("pairs") or []
    ]
    return TableData(
        title="Task pairs (whole shared trunk)" + _run_title(summary, run),
        headers=[
            "task a",
            "task b",
            "mean cosine",
            "conflict rate",
            "cosine when conflicting",
            "mean GMS",
        ],
        rows=rows,
        align=["l", "l", "r", "r", "r", "r"],
        notes=[
            "conflict rate = share of instrumented steps with cosine < 0; "
            "GMS = gradient magnitude similarity (Yu et al. 2020)"
        ],
        marked={i for i, p in enumerate(run.get("pairs") or []) if _conflicting(p)},
    )


def _conflicting(pair: dict[str, Any]) -> bool:
    """The diagnosis' directional-conflict rule (sign flips near zero cosine do not count)."""
    rate, cos, neg = (
        pair.get("conflict_rate"),
        pair.get("cosine_mean"),
        pair.get("conflict_cosine_mean"),
    )
    if not _ok(rate) or not _ok(cos):
        return False
    strong = _ok(neg) and neg <= -WEAK_COSINE
    return cos <= MEAN_COSINE_CONFLICT or (rate >= CONFLICT_WARN and strong)


def layer_scores(summary: dict[str, Any]) -> list[dict[str, Any]]:
    """Per shared layer: mean conflict rate over pairs and its worst pair, most conflicted first."""
    run = reference_run(summary) or {}
    layers = summary.get("layers") or []
    out = []
    for depth, layer in enumerate(layers, start=1):
        cells = []
        for p in run.get("pairs") or []:
            m = (p.get("layers") or {}).get(layer) or {}
            if _ok(m.get("conflict_rate")):
                cells.append((m["conflict_rate"], -(m.get("cosine_mean") or 0.0), p, m))
        if not cells:
            continue
        worst = max(cells, key=lambda c: (c[0], c[1]))
        out.append(
            {
                "layer": layer,
                "depth": depth,
                "mean_rate": sum(c[0] for c in cells) / len(cells),
                "worst_pair": f"{worst[2]['a']}–{worst[2]['b']}",
                "worst_rate": worst[0],
                "worst_cosine": worst[3].get("cosine_mean"),
            }
        )
    out.sort(
        key=lambda d: (d["worst_rate"], d["mean_rate"], -(d["worst_cosine"] or 0.0)), reverse=True
    )
    return out


def layer_data(summary: dict[str, Any], top: int | None = 5) -> TableData:
    """The most conflicted shared layers (by their worst pair's conflict rate)."""
    scores = layer_scores(summary)
    n_layers = len(summary.get("layers") or [])
    shown = scores[:top] if top else scores
    rows = [
        [
            d["layer"],
            f"{d['depth']}/{n_layers}",
            pct(d["mean_rate"]),
            d["worst_pair"],
            pct(d["worst_rate"]),
            signed(d["worst_cosine"]),
        ]
        for d in shown
    ]
    title = "Most conflicted shared layers"
    if top and len(scores) > top:
        title += f" (top {top} of {len(scores)})"
    return TableData(
        title=title,
        headers=[
            "layer",
            "depth",
            "mean conflict rate",
            "worst pair",
            "its conflict rate",
            "its mean cosine",
        ],
        rows=rows,
        align=["l", "r", "r", "l", "r", "r"],
        notes=["depth 1 is the shared layer nearest the input"],
    )


def _hib_arrow(hib: bool) -> str:
    return "↑" if hib else "↓"


def comparison_data(summary: dict[str, Any], level: int = 0) -> TableData | None:
    """The ranked comparison table of a compare run (``None`` without a comparison).

    ``level`` trades detail for width (the terminal): 0 is the full table (HTML, Markdown);
    1 moves uniform seed counts and the dominating sweep points into the notes and shows
    stds with one digit; 2 also puts each ± std under its mean; 3 also drops the rank and
    peak-memory columns (the rows stay in rank order).
    """
    comp = summary.get("comparison")
    if not comp or not comp.get("rows"):
        return None
    tasks = summary.get("tasks") or list(comp.get("higher_is_better") or {})
    hib = comp.get("higher_is_better") or {}
    ref = comp.get("reference")
    ref_text = {"single_task": "single-task models", "ew": "equal weighting (ew)"}.get(
        ref, "no reference"
    )
    seed_counts = {(int(r.get("seeds") or 0), int(r.get("failed") or 0)) for r in comp["rows"]}
    seeds_col = level == 0 or len(seed_counts) > 1 or any(f for _, f in seed_counts)
    dom_col = level == 0
    rank_col = mem_col = level < 3
    std_digits = 2 if level == 0 else 1
    sep = "\n±" if level >= 2 else " ± "
    headers = ["#"] * rank_col + ["method"]
    headers += [f"{t} {_hib_arrow(bool(hib.get(t)))}" for t in tasks]
    headers += ["Δm%", "conflict" if level < 2 else "confl.", "step ms"] + ["peak MB"] * mem_col
    headers += ["seeds"] * seeds_col + ["dominated by"] * dom_col
    rows, marked, dom_notes = [], set(), []
    for i, r in enumerate(comp["rows"]):
        seeds = int(r.get("seeds") or 0)
        dm = r.get("delta_m")
        dm_text = DASH
        if _ok(dm):
            dm_text = f"{dm:+.2f}"
            if seeds > 1 and _ok(r.get("delta_m_std")):
                dm_text += f"{sep}{r['delta_m_std']:.{std_digits}g}"
        dom = list(r.get("dominated_by") or [])
        dom_text = ", ".join(dom[:2]) + (f" +{len(dom) - 2}" if len(dom) > 2 else "")
        if dom:
            marked.add(i)
            dom_notes.append(f"† {r['label']} is dominated by {dom_text}")
        seeds_text = str(seeds) + (f" ({r['failed']} failed)" if r.get("failed") else "")
        rows.append(
            [str(r.get("rank", i + 1))] * rank_col
            + [r["label"] + (" †" if dom else "")]
            + [mean_std((r.get("metric") or {}).get(t), seeds, std_digits, sep) for t in tasks]
            + [dm_text, pct(r.get("conflict_rate")), num(r.get("step_time_ms"), 3)]
            + [num(r.get("peak_memory_mb"), 4)] * mem_col
            + [seeds_text] * seeds_col
            + [dom_text] * dom_col
        )
    single = comp.get("single_task") or {}
    if single:
        rows.append(
            [""] * rank_col
            + ["single-task"]
            + [mean_std(single.get(t), 2, std_digits, sep) for t in tasks]
            + ["ref." if ref == "single_task" else DASH, DASH, DASH]
            + [DASH] * mem_col
            + [""] * seeds_col
            + [""] * dom_col
        )
    better = "↑ higher is better" if hib and all(hib.values()) else "↓ lower is better"
    if any(hib.values()) and not all(hib.values()):
        better = "↑ higher / ↓ lower is better, per task"
    notes = [
        f"metric: {comp.get('evaluation') or summary.get('evaluation') or 'unknown'} "
        f"({better}); Δm% against {ref_text}, negative = better (Maninis et al. 2019)",
    ]
    if level >= 3:
        notes.append("rows in rank order; peak memory is in report.html")
    if not seeds_col:
        n = next(iter(seed_counts))[0]
        notes.append(f"mean ± std over {n} seeds" if n > 1 else "one seed: no std")
    if marked:
        notes.append("† a linear-scalarization sweep point Pareto-dominates this row")
        if not dom_col:
            notes += dom_notes
    if comp.get("negative_transfer"):
        notes.append(
            "negative transfer (every multi-task method is worse than single-task) "
            "on: " + ", ".join(comp["negative_transfer"])
        )
    for f in comp.get("failed_runs") or []:
        notes.append(f"failed: {f.get('label')} seed {f.get('seed')}: {f.get('error')}")
    align = ["r"] * rank_col + ["l"] + ["r"] * (len(headers) - 1 - rank_col - dom_col)
    return TableData(
        title="Comparison, best first",
        headers=headers,
        rows=rows,
        align=align + ["l"] * dom_col,
        notes=notes,
        marked=marked,
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
    rows = []
    for r in runs:
        final = r.get("final_loss") or {}
        rows.append(
            [str(r.get("method")), str(r.get("seed")), str(r.get("status"))]
            + ["; ".join(map(str, r.get("warnings") or []))] * warn_col
            + [str(r.get("steps")), str(r.get("instrumented_steps"))]
            + [num(final.get(t)) for t in tasks]
            + [num(r.get("step_time_ms_median"), 3), r.get("error") or ""]
        )
    return TableData(
        title="Runs",
        headers=["method", "seed", "status"]
        + ["warnings"] * warn_col
        + ["steps", "instrumented"]
        + [f"final loss {t}" for t in tasks]
        + ["step ms", "error"],
        rows=rows,
        align=["l", "r", "l"] + ["l"] * warn_col + ["r", "r"] + ["r"] * len(tasks) + ["r", "l"],
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
            [str(r.get("method")), f"{100 * rate:.0f}%" if _ok(rate) else DASH]
            + [f"{gains[t]:.3g}" if _ok(gains.get(t)) else DASH for t in tasks]
            + [f"{angle:.1f}°" if _ok(angle) else DASH]
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


def verdict(summary: dict[str, Any]) -> str | None:
    comp = summary.get("comparison") or {}
    return comp.get("verdict") or None


# -- Rich renderables ----------------------------------------------------------------------


def to_rich(data: TableData, keep: tuple[int, ...] = (0,)) -> Table:
    """A Rich table; every cell is plain :class:`Text`, so names are never read as markup.

    Columns in ``keep`` (the names) never wrap or get cut; numbers wrap at their spaces.
    """
    table = Table(
        title=Text(data.title, style="bold"),
        title_justify="left",
        caption="\n".join(data.notes) or None,
        caption_justify="left",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        collapse_padding=True,
    )
    for k, (head, al) in enumerate(zip(data.headers, data.align, strict=True)):
        table.add_column(
            Text(head), justify="right" if al == "r" else "left", no_wrap=k in keep, overflow="fold"
        )
    for i, row in enumerate(data.rows):
        table.add_row(*(Text(c) for c in row), style="yellow" if i in data.marked else None)
    return table


def task_table(summary: dict[str, Any]) -> Table:
    return to_rich(task_data(summary))


def pair_table(summary: dict[str, Any]) -> Table:
    return to_rich(pair_data(summary), keep=(0, 1))


def layer_table(summary: dict[str, Any], top: int = 5) -> Table:
    return to_rich(layer_data(summary, top=top))


def preview_table(summary: dict[str, Any]) -> Table | None:
    """The ``--preview`` table as the terminal shows it (``None`` without a preview)."""
    data = preview_data(summary)
    return None if data is None else to_rich(data)


def comparison_table_rich(
    summary: dict[str, Any], console: Console | None = None
) -> RenderableType:
    """The ranked comparison table followed by the verdict.

    Given the ``console``, the most detailed layout that fits its width is chosen.
    """
    table: Table | None = None
    for level in (1, 2, 3):
        data = comparison_data(summary, level=level)
        if data is None:
            return Text("")
        names = (0, 1) if level < 3 else (0,)
        table = to_rich(data, keep=names)
        if console is None:
            break
        wide = console.options.update_width(10_000)  # measure unclamped
        if Measurement.get(console, wide, table).maximum <= console.width:
            break
    assert table is not None
    parts: list[RenderableType] = [table]
    text = verdict(summary)
    if text:
        parts.append(Text.assemble(("Verdict: ", "bold green"), text))
    return Group(*parts)
