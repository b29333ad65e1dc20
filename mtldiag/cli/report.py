"""``mtldiag report RUN_DIR``: rebuild the report (and, for a cut-short run, summary.json)."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.markup import escape

from mtldiag.cli.app import app, console, err_console, guarded
from mtldiag.cli.render import render_summary
from mtldiag.report.build import build_report


@app.command()
@guarded
def report(
    run_dir: Path = typer.Argument(
        ...,
        help="A run directory written by `mtldiag profile` or `mtldiag compare`.",
        show_default=False,
    ),
    rebuild: bool = typer.Option(
        False,
        "--rebuild",
        help="Rebuild summary.json from steps.csv and pairs.csv even when it exists.",
    ),
    quiet: bool = typer.Option(
        False, "--quiet", "-q", help="Only print the paths written, not the tables."
    ),
) -> None:
    """Write report.html, report.md and plots/ for a run directory (also one cut short)."""
    result = build_report(run_dir, rebuild=rebuild)
    if result.rebuilt and result.paths is not None:
        err_console.print(
            f"[yellow]rebuilt[/] {escape(str(result.summary_path))} from steps.csv and "
            "pairs.csv (status: interrupted)"
        )
    if not quiet or result.paths is None:
        render_summary(console, result.summary)
    if result.paths is None:
        err_console.print(
            f"[yellow]warning:[/] cannot write in {escape(str(run_dir))} "
            f"({escape(str(result.not_written))}): the summary above is not saved; copy the "
            f"folder somewhere writable and report it there: cp -r {escape(str(run_dir))} "
            "/tmp/run && mtldiag report /tmp/run",
            highlight=False,
            soft_wrap=True,
        )
        return
    for w in result.paths.warnings:
        err_console.print(f"[yellow]warning:[/] {escape(w)}", highlight=False)
    console.print(f"\n[dim]report:[/] {escape(str(result.paths.html))}")
    console.print(f"[dim]markdown:[/] {escape(str(result.paths.markdown))}")
    console.print(f"[dim]plots:[/] {len(result.paths.plots)} in {escape(str(run_dir / 'plots'))}")
