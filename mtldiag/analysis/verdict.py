"""The comparison's verdict: one paragraph a person reads before the table.

It says what the seeds allow (:mod:`mtldiag.analysis.evidence`): whether rank 1 beats rank 2
beyond seed noise, on which tasks the winner is worse than the reference, and why Δm% may
mostly reflect one task.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from mtldiag.analysis.evidence import Caution, caution_sentence, noise_sentence, worse_sentence
from mtldiag.analysis.numbers import interval, is_number, sig
from mtldiag.rundir.schema import EVALUATION_TEXT

REFERENCE_TEXT = {"single_task": "the single-task models", "ew": "equal weighting (ew)"}


def delta_m_text(row: Mapping[str, Any]) -> str:
    """A row's Δm% with its 95 % interval over seeds: "-5.41% (95% interval -66.0 to 55.2)"."""
    text = f"{sig(row['delta_m'], sign=True)}%"
    if is_number(row.get("delta_m_std")) and row.get("delta_m_ci95"):
        return f"{text} (95% interval {interval(row['delta_m_ci95'])})"
    return f"{text} (one seed)"


def _names(labels: Sequence[str]) -> str:
    return ", ".join(labels)


def verdict(table: Mapping[str, Any], by_delta: bool, note: Caution | None = None) -> str:
    """The verdict on a comparison ``table`` (rows ranked, ``verdict_kind`` and
    ``first_vs_second`` set). ``by_delta``: ranked by Δm%; ``note``: the caution, if any."""
    rows = [r for r in table["rows"] if r["rank"] is not None]
    ref = table["reference"]
    parts: list[str] = []
    if not rows:
        parts.append("No run finished: there is nothing to rank.")
    else:
        best = rows[0]
        how = "by mean per-task rank"
        if by_delta:
            how = f"by Δm%, {delta_m_text(best)} against {REFERENCE_TEXT.get(ref, '')}"
        if by_delta and ref == "ew" and best["label"] == "ew":
            how = "by Δm%: it is the reference, and every other row is worse than it"
        parts.append(f"{best['label']} ranks first {how}.")
        second = rows[1]["label"] if len(rows) > 1 else ""
        parts.append(
            noise_sentence(table["verdict_kind"], best["label"], second, table["first_vs_second"])
        )
        parts.append(worse_sentence(best["label"], best["worse_on"], best["per_task"]))
    if ref == "ew":
        parts.append(
            "Δm% is against equal weighting (ew): --single-task measures it against "
            "single-task models."
        )
    elif ref is None and rows:
        parts.append("No Δm%: there are no single-task runs and no ew run to measure it against.")
    if note is not None:
        parts.append(caution_sentence(note))
    dominated = [r for r in rows if r["kind"] == "method" and r["dominated_by"]]
    if dominated:
        sweepers = sorted({s for r in dominated for s in r["dominated_by"]})
        parts.append(
            f"Linear scalarization ({_names(sweepers)}) Pareto-dominates "
            f"{_names([r['label'] for r in dominated])}: a fixed weighted sum does at least as "
            "well on every task."
        )
    if table["negative_transfer"]:
        parts.append(
            f"Negative transfer on {_names(table['negative_transfer'])}: every multi-task run "
            "does worse there than the single-task model."
        )
    if table["failed_runs"]:
        seeds: dict[str, list[str]] = {}
        for f in table["failed_runs"]:
            seeds.setdefault(f["label"], []).append(str(f["seed"]))
        listed = [f"{label} (seed {', '.join(s)})" for label, s in seeds.items()]
        parts.append(f"Failed: {_names(listed)}; see failed_runs for the step and task.")
    if table["evaluation"] in EVALUATION_TEXT:
        parts.append(f"Metrics: {EVALUATION_TEXT[table['evaluation']]}.")
    return " ".join(p for p in parts if p)
