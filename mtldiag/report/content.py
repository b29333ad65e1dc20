"""What a report says, independent of its format (HTML or Markdown)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from mtldiag.analysis.numbers import yes_no
from mtldiag.report.cells import TableData
from mtldiag.report.comparison import comparison_data, verdict
from mtldiag.report.plots import Plot
from mtldiag.report.tables import (
    layer_data,
    pair_data,
    preview_data,
    run_warnings,
    runs_data,
    task_data,
)
from mtldiag.rundir.schema import EVALUATION_TEXT, space_fact


@dataclass
class ReportContent:
    """Title, facts, verdict, findings, tables and plots of one run directory's report.

    ``warnings`` are the plots that could not be drawn; ``run_warnings`` the runs' own
    (``runs[i]["warnings"]``, e.g. Nash-MTL solves that failed), one line each.
    """

    title: str
    facts: list[tuple[str, str]]
    status: str
    verdict: str | None
    diagnosis: list[dict[str, Any]]
    tables: list[TableData]
    plots: list[Plot]
    warnings: list[str] = field(default_factory=list)
    run_warnings: list[str] = field(default_factory=list)


def build_content(summary: dict[str, Any], plots: list[Plot], warnings: list[str]) -> ReportContent:
    kind = str(summary.get("kind") or "profile")
    tasks = [str(t) for t in summary.get("tasks") or []]
    layers = [str(x) for x in summary.get("layers") or []]
    facts = [
        ("run", str(summary.get("name"))),
        ("kind", kind),
        ("status", str(summary.get("status"))),
        ("created", str(summary.get("created"))),
        ("device", str(summary.get("device"))),
        ("gradients w.r.t.", space_fact(summary)),
        ("tasks", ", ".join(tasks)),
        (
            "shared layers",
            f"{len(layers)}: "
            + ", ".join(layers[:8])
            + (f", … ({len(layers) - 8} more)" if len(layers) > 8 else ""),
        ),
    ]
    if summary.get("profile"):
        p = summary["profile"]
        facts.append(
            (
                "profile",
                f"{p.get('steps')} steps, Jacobian every {p.get('every')}, "
                f"method {p.get('method')}",
            )
        )
    if summary.get("compare"):
        c = summary["compare"]
        facts.append(
            (
                "compare",
                f"{len(c.get('methods') or [])} methods × seeds "
                f"{c.get('seeds')}, {c.get('steps')} steps, Jacobian every "
                f"{c.get('every')}; single-task: {yes_no(bool(c.get('single_task')))}; "
                f"sweep: {c.get('sweep') or 0}",
            )
        )
    evaluation = summary.get("evaluation") or (summary.get("comparison") or {}).get("evaluation")
    if evaluation:
        explain = EVALUATION_TEXT.get(evaluation)
        facts.append(("evaluation", f"{evaluation}: {explain}" if explain else str(evaluation)))
    if summary.get("rebuilt"):
        facts.append(("rebuilt", str(summary["rebuilt"])))
    tables: list[TableData] = []
    comp = comparison_data(summary)
    if comp is not None:
        tables.append(comp)
    if summary.get("runs"):
        tables += [task_data(summary), pair_data(summary)]
        if len(layers) > 1:
            tables.append(layer_data(summary, top=10))
    preview = preview_data(summary, heading=True)
    if preview is not None:
        tables.append(preview)
    if summary.get("runs"):
        tables.append(runs_data(summary))
    return ReportContent(
        title=f"mtldiag {kind} report — {summary.get('name')}",
        facts=facts,
        status=str(summary.get("status")),
        verdict=verdict(summary),
        diagnosis=list(summary.get("diagnosis") or []),
        tables=tables,
        plots=plots,
        warnings=warnings,
        run_warnings=run_warnings(summary),
    )
