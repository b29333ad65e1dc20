"""``mtldiag check``: CI regression rules over a run, exit 0 (pass), 1 (a rule failed), 2 (bad input).

Also used by ``profile --check`` and ``compare --check`` through :func:`check_and_render`.
"""

from __future__ import annotations

import os
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from mtldiag.analysis.check import CheckReport, fmt_number, run_check
from mtldiag.cli.app import app, console, guarded
from mtldiag.errors import MtldiagError
from mtldiag.report.check_output import render_json, render_junit, render_markdown

FORMATS = ("table", "json")


def _write(path: Path, text: str, what: str, append: bool = False) -> None:
    """Write (or append) a report file; files are written only once the report exists."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a" if append else "w", encoding="utf-8") as fh:
            fh.write(text)
    except OSError as exc:
        raise MtldiagError(
            f"cannot write {what} '{path}': {exc.strerror}.",
            hint="check the folder exists and is writable",
        ) from None


def report_table(report: CheckReport) -> Table:
    """The Rich table: rule, value, baseline, limit, PASS/FAIL."""
    title = f"Checks: {report.run}" + (f" vs {report.baseline}" if report.baseline else "")
    table = Table(title=title, title_justify="left")
    table.add_column("rule")
    if report.kind == "compare":
        table.add_column("method")
    table.add_column("value", justify="right")
    table.add_column("baseline", justify="right")
    table.add_column("limit")
    table.add_column("result")
    for r in report.results:
        rule = escape(r.name) + (f" [dim]({escape(r.detail)})[/]" if r.detail else "")
        result = "[green]PASS[/]" if r.passed else "[bold red]FAIL[/]"
        cells = [rule] + ([escape(r.method)] if report.kind == "compare" else [])
        table.add_row(*cells, fmt_number(r.value), fmt_number(r.baseline), escape(r.limit), result)
    return table


def check_and_render(
    run_dir: Path,
    rules: Path | None,
    baseline: Path | None,
    junit: Path | None,
    markdown: Path | None,
    fmt: str,
    to: Console | None = None,
) -> int:
    """Check ``run_dir``, write the requested reports, print the result; return the exit code.

    ``to``: where the table goes (default stdout; ``--json`` runs keep stdout for JSON).

    Rules come from ``rules`` or, when ``None``, from the ``checks:`` list of the run's
    ``spec.yaml``. The markdown is also appended to ``$GITHUB_STEP_SUMMARY`` when set.
    """
    if fmt not in FORMATS:
        raise MtldiagError(f"--format '{fmt}' is not one of: {', '.join(FORMATS)}.")
    report = run_check(run_dir, rules, baseline)
    if junit is not None:
        _write(junit, render_junit(report), "--junit file")
    md = render_markdown(report)
    if markdown is not None:
        _write(markdown, md, "--markdown file")
    step_summary = os.environ.get("GITHUB_STEP_SUMMARY")
    if step_summary:
        _write(Path(step_summary), md + "\n", "GITHUB_STEP_SUMMARY", append=True)
    out = to or console
    if fmt == "json":
        typer.echo(render_json(report))
    else:
        out.print(report_table(report))
        for r in report.results:
            if not r.passed:
                out.print(
                    f"[bold red]FAIL[/] {escape(r.name)}: {escape('; '.join(r.failures))}",
                    highlight=False,
                )
        if report.status != "complete":
            out.print(
                f"[yellow]note: the run's status is '{escape(report.status)}': its "
                "numbers cover only the steps it recorded.[/]",
                highlight=False,
            )
        style = "green" if report.passed else "bold red"
        out.print(f"[{style}]check: {report.headline()}[/]", highlight=False)
    return report.exit_code


@app.command()
@guarded
def check(
    run: Path = typer.Argument(
        ..., help="Run directory (or its summary.json) to check.", show_default=False
    ),
    baseline: Path | None = typer.Option(
        None,
        "--baseline",
        "-b",
        help="Baseline run directory or summary.json (for max_increase / max_decrease).",
    ),
    rules: Path | None = typer.Option(
        None,
        "--rules",
        "-r",
        help="YAML rules file (default: the checks: list of the run's spec.yaml).",
    ),
    junit: Path | None = typer.Option(
        None, "--junit", help="Write JUnit XML here (one test case per rule)."
    ),
    markdown: Path | None = typer.Option(
        None, "--markdown", help="Write a markdown table here (for a PR comment)."
    ),
    fmt: str = typer.Option("table", "--format", "-f", help="table | json (stdout)."),
) -> None:
    """Check a run against rules (and a baseline): exit 0 pass, 1 a rule failed, 2 bad input.

    Timing rules (step_time_ms) are noisy: compare to a baseline from the same runner type
    with a relative tolerance, e.g. {metric: step_time_ms, max_increase: 50%}.
    """
    code = check_and_render(run, rules, baseline, junit, markdown, fmt)
    if code:
        raise typer.Exit(code)
