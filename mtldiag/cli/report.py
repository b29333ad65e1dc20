"""``mtldiag report RUN_DIR``: rebuild the report (and, for a cut-short run, summary.json)."""

from __future__ import annotations

from pathlib import Path

import typer

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
    if result.rebuilt:
        err_console.print(
            f"[yellow]rebuilt[/] {result.summary_path} from steps.csv and "
            "pairs.csv (status: interrupted)"
        )
    if not quiet:
        render_summary(console, result.summary)
    for w in result.paths.warnings:
        err_console.print(f"[yellow]warning:[/] {w}", highlight=False)
    console.print(f"\n[dim]report:[/] {result.paths.html}")
    console.print(f"[dim]markdown:[/] {result.paths.markdown}")
    console.print(f"[dim]plots:[/] {len(result.paths.plots)} in {run_dir / 'plots'}")
