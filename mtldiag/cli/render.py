"""Terminal rendering of a summary (tables come from :mod:`mtldiag.report.tables`)."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.markup import escape

_SEVERITY = {"critical": "bold red", "warning": "yellow", "info": "cyan"}


def render_summary(console: Console, summary: dict[str, Any]) -> None:
    try:
        from mtldiag.report import tables
    except ImportError:  # the report package is optional for the core loop
        tables = None
    if tables is not None:
        console.print(tables.task_table(summary))
        console.print(tables.pair_table(summary))
        if summary.get("layers") and len(summary["layers"]) > 1:
            console.print(tables.layer_table(summary, top=5))
        if summary.get("comparison"):
            console.print(tables.comparison_table_rich(summary, console))
    render_diagnosis(console, summary.get("diagnosis") or [])
    if summary.get("status") not in (None, "complete"):
        console.print(f"[yellow]run status: {summary['status']}[/]")


def render_diagnosis(console: Console, findings: list[dict[str, Any]]) -> None:
    if not findings:
        return
    console.print("\n[bold]Diagnosis[/]")
    for f in findings:
        style = _SEVERITY.get(f.get("severity", "info"), "white")
        severity = f"{f['severity'].upper():8}"
        console.print(f"[{style}]{severity}[/] {escape(f['message'])}", highlight=False)
        console.print(f"         [dim]→ {escape(f['suggestion'])}[/]", highlight=False)
