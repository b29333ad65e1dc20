"""The ranked comparison table of a compare run, as text cells, and its verdict."""

from __future__ import annotations

from typing import Any

from mtldiag.analysis.numbers import plain, sig
from mtldiag.report.cells import DASH, TableData, is_number, mean_std, num, pct

REFERENCE_TEXT = {"single_task": "single-task models", "ew": "equal weighting (ew)"}


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
    ref_text = REFERENCE_TEXT.get(ref, "no reference")
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
        if is_number(dm):
            dm_text = sig(dm, sign=True)
            if seeds > 1 and is_number(r.get("delta_m_std")):
                dm_text += f"{sep}{plain(r['delta_m_std'], std_digits)}"
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


def verdict(summary: dict[str, Any]) -> str | None:
    """The comparison's one-paragraph verdict, if the summary has one."""
    comp = summary.get("comparison") or {}
    return comp.get("verdict") or None
