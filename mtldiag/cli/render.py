"""Terminal rendering of a summary (tables come from :mod:`mtldiag.report.tables`).

:func:`render_summary` is the one place a summary reaches the terminal — ``profile``,
``compare`` and ``report`` all call it — so every part (tables, diagnosis, status, the runs'
warnings, the ``--preview`` table) is printed once, the same way by each command.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape

from mtldiag.cli import tables
from mtldiag.report.tables import run_warnings

_SEVERITY = {"critical": "bold red", "warning": "yellow", "info": "cyan"}


def render_summary(console: Console, summary: dict[str, Any]) -> None:
    """Tables, diagnosis, run status, the runs' warnings, then the preview table if any."""
    console.print(tables.task_table(summary, console))
    console.print(tables.pair_table(summary, console))
    if summary.get("layers") and len(summary["layers"]) > 1:
        console.print(tables.layer_table(summary, top=5, console=console))
    if summary.get("comparison"):
        console.print(tables.comparison_table_rich(summary, console))
    render_diagnosis(console, summary.get("diagnosis") or [])
    if summary.get("status") not in (None, "complete"):
        console.print(f"[yellow]run status: {escape(str(summary['status']))}[/]")
    render_run_warnings(console, summary)
    preview = tables.preview_table(summary, console)
    if preview is not None:
        console.print(preview)


def render_run_warnings(console: Console, summary: dict[str, Any]) -> None:
    """One yellow line per warning a run carries (``runs[i]["warnings"]``), names escaped."""
    for line in run_warnings(summary):
        console.print(f"[yellow]warning:[/] {escape(line)}", highlight=False)


def render_diagnosis(console: Console, findings: list[dict[str, Any]]) -> None:
    if not findings:
        return
    console.print("\n[bold]Diagnosis[/]")
    for f in findings:
        style = _SEVERITY.get(f.get("severity", "info"), "white")
        severity = f"{f['severity'].upper():8}"
        console.print(f"[{style}]{severity}[/] {escape(f['message'])}", highlight=False)
        console.print(f"         [dim]→ {escape(f['suggestion'])}[/]", highlight=False)


def render_cost(console: Console, summary: dict[str, Any]) -> None:
    """``profile``'s cost line: median step time and peak memory of its run."""
    runs = summary.get("runs") or []
    if not runs:
        return
    run = runs[0]
    ms, mb = run.get("step_time_ms_median"), run.get("peak_memory_mb")
    what = (
        "CUDA allocator peak" if str(summary.get("device", "")).startswith("cuda") else "peak RSS"
    )
    parts = []
    if ms is not None:
        parts.append(f"step time {ms:.3g} ms (median of {run.get('steps', 0)})")
    if mb is not None:
        parts.append(f"peak memory {mb:,.1f} MB ({what})")
    if parts:
        console.print("\n" + "; ".join(parts), highlight=False)


def render_result(
    console: Console,
    err: Console,
    summary: dict[str, Any],
    run_dir: Path,
    as_json: bool,
    quiet: bool,
) -> None:
    """What ``profile`` and ``compare`` print at the end.

    ``--json``: the summary alone on stdout (the run directory on stderr); ``--quiet``: the run
    directory alone; else tables, diagnosis, the cost line, then the run directory.
    """
    if as_json:
        console.print(json.dumps(summary, indent=2), markup=False, highlight=False, soft_wrap=True)
        err.print(f"run directory: {run_dir}", markup=False, highlight=False)
        return
    if not quiet:
        render_summary(console, summary)
        if summary.get("kind") == "profile":
            render_cost(console, summary)
    console.print(f"\n[dim]run directory:[/] {escape(str(run_dir))}", highlight=False)
