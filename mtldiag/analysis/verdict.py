"""The comparison's verdict: one paragraph a person reads before the table."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from mtldiag.rundir.schema import EVALUATION_TEXT

REFERENCE_TEXT = {"single_task": "the single-task models", "ew": "equal weighting (ew)"}


def _fmt_dm(row: Mapping[str, Any]) -> str:
    s = f"{row['delta_m']:+.2f}%"
    if row["seeds"] > 1 and row["delta_m_std"] is not None:
        s = f"{row['delta_m']:+.2f} ± {row['delta_m_std']:.2f}%"
    return s


def _overlap(
    a: Mapping[str, Any], b: Mapping[str, Any], by_delta: bool, tasks: Sequence[str]
) -> bool:
    """Whether the mean ± one std intervals over seeds of two rows overlap (on Δm%, or on
    every task when ranked without Δm%)."""
    if by_delta:
        return abs(a["delta_m"] - b["delta_m"]) <= (a["delta_m_std"] or 0) + (b["delta_m_std"] or 0)
    return all(
        abs(a["metric"][t]["mean"] - b["metric"][t]["mean"])
        <= (a["metric"][t]["std"] or 0) + (b["metric"][t]["std"] or 0)
        for t in tasks
    )


def _names(labels: Sequence[str]) -> str:
    return ", ".join(labels)


def verdict(
    table: Mapping[str, Any],
    by_delta: bool,
    tasks: Sequence[str],
    driver: tuple[str, float] | None = None,
) -> str:
    """The verdict on a comparison ``table`` (its rows ranked, ``verdict`` not yet set).

    ``by_delta`` says the rows are ranked by Δm%; ``driver`` is the task whose relative
    changes dominate Δm% and its share, when one does.
    """
    rows = [r for r in table["rows"] if r["rank"] is not None]
    ref = table["reference"]
    ref_text = REFERENCE_TEXT.get(ref, "")
    parts: list[str] = []
    if not rows:
        parts.append("No run finished: there is nothing to rank.")
    else:
        best = rows[0]
        how = "by mean per-task rank"
        if by_delta:
            how = f"by Δm% ({_fmt_dm(best)} against {ref_text})"
        parts.append(f"{best['label']} ranks first {how}.")
        if len(rows) > 1:
            second = rows[1]
            what = f" ({_fmt_dm(second)})" if by_delta else ""
            if best["seeds"] < 2 or second["seeds"] < 2:
                parts.append(
                    f"{second['label']} is second{what}; with one seed, seed noise cannot be "
                    "judged (run with --seeds 0,1,2)."
                )
            elif _overlap(best, second, by_delta, tasks):
                parts.append(
                    f"{second['label']} is second{what}: the difference is within seed noise "
                    f"(mean ± one std over seeds overlap)."
                )
            else:
                parts.append(
                    f"{second['label']} is second{what}, more than one std over seeds apart."
                )
    if ref == "ew":
        parts.append(
            "Δm% is against equal weighting (ew): --single-task measures it against "
            "single-task models."
        )
    elif ref is None and rows:
        parts.append("No Δm%: there are no single-task runs and no ew run to measure it against.")
    if driver is not None:
        parts.append(
            f"Caution: task '{driver[0]}' makes up {driver[1]:.0%} of the relative changes "
            "behind Δm% (its reference value is small), so the ranking mostly reflects that task: "
            "read the per-task columns too."
        )
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
    return " ".join(parts)
