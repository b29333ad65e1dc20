"""``mtldiag profile`` and ``mtldiag validate``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from mtldiag.analysis.rules import load_rules
from mtldiag.cli.app import app, console, err_console, guarded
from mtldiag.cli.check import check_and_render
from mtldiag.cli.options import (
    ACCUMULATE,
    AS_JSON,
    BASELINE,
    CHECK,
    CLIP_NORM,
    LOG,
    PRECISION,
    QUIET,
    RULES,
    SPEC_HELP,
    WRT,
    training_overrides,
)
from mtldiag.cli.progress import make_observer
from mtldiag.cli.render import render_result
from mtldiag.engine.distributed import is_main
from mtldiag.rundir.schema import space_fact
from mtldiag.runs.profile import run_profile
from mtldiag.runs.validate import validate_spec
from mtldiag.spec import load_spec


@app.command()
@guarded
def profile(
    spec: Path | None = typer.Argument(None, help=SPEC_HELP, show_default=False),
    steps: int | None = typer.Option(
        None, "--steps", "-n", help="Training steps [spec: profile.steps]."
    ),
    every: int | None = typer.Option(
        None, "--every", "-k", help="Instrument every K-th step [spec: profile.every]."
    ),
    device: str | None = typer.Option(
        None, "--device", help="auto | cpu | cuda | cuda:N | mps [spec: device]."
    ),
    out: Path | None = typer.Option(
        None, "--out", "-o", help="Run directory [runs/<name>/<timestamp>]."
    ),
    seed: int | None = typer.Option(
        None, "--seed", help="Seed for weights and data order [spec: seed]."
    ),
    method: str | None = typer.Option(
        None,
        "--method",
        "-m",
        help="Balancing method, e.g. pcgrad, cagrad:c=0.4 or mgda@representation [ew].",
    ),
    preview: bool = typer.Option(
        False,
        "--preview",
        help="Also compute every gradient method's update on the recorded Jacobians.",
    ),
    check: bool = CHECK,
    rules: Path | None = RULES,
    baseline: Path | None = BASELINE,
    wrt: str | None = WRT,
    log: str | None = LOG,
    as_json: bool = AS_JSON,
    quiet: bool = QUIET,
    accumulate: int | None = ACCUMULATE,
    precision: str | None = PRECISION,
    clip_grad_norm: float | None = CLIP_NORM,
) -> None:
    """Train with instrumented steps and tell why the tasks fight."""
    loaded = load_spec(spec, overrides=training_overrides(accumulate, precision, clip_grad_norm))
    if rules is not None:
        load_rules(rules)  # a bad rules file is refused before training, not after it
    with make_observer(err_console, quiet or as_json) as obs:
        result = run_profile(
            loaded,
            out=out,
            steps=steps,
            every=every,
            device=device,
            seed=seed,
            method=method,
            observer=obs,
            preview=preview,
            wrt=wrt,
            log=log,
        )
    if not is_main():  # torchrun: rank 0 reports
        return
    if not (as_json or quiet):
        print_space(err_console, result.summary)
    render_result(console, err_console, result.summary, result.run_dir, as_json, quiet)
    if check or rules is not None or baseline is not None:
        to = err_console if as_json else console
        code = check_and_render(result.run_dir, rules, baseline, None, None, "table", to)
        if code:
            raise typer.Exit(code)


def print_space(out: Console, summary: Any) -> None:
    """Say so when gradient numbers are representation-space ones (all, or some runs')."""
    if summary.get("jacobian") == "representation":
        out.print(
            "[yellow]gradients w.r.t. the shared representation (--wrt representation): norms, "
            "cosines, conflicts and updates are representation-space numbers[/]"
        )
    elif summary.get("jacobian") == "mixed":
        out.print(f"[yellow]gradients w.r.t. {escape(space_fact(summary))}[/]")


@app.command()
@guarded
def validate(
    spec: Path | None = typer.Argument(None, help=SPEC_HELP, show_default=False),
    device: str | None = typer.Option(None, "--device", help="auto | cpu | cuda | mps."),
) -> None:
    """Check a spec without training: imports, one forward, every task's loss, shared params."""
    report = validate_spec(spec, device=device)
    table = Table(title="Shared parameters (by layer)", title_justify="left", min_width=34)
    table.add_column("layer")
    table.add_column("parameters", justify="right")
    table.add_column("tasks reaching it")
    for row in report["layers"]:  # names are the user's: escaped, a task 'c[/]' is no markup
        table.add_row(escape(row["layer"]), f"{row['numel']:,}", escape(", ".join(row["tasks"])))
    losses = Table(title="Task losses on one batch", title_justify="left", min_width=30)
    losses.add_column("task")
    losses.add_column("loss", justify="right")
    for t, v in report["losses"].items():
        losses.add_row(escape(t), f"{v:.4g}")
    console.print(losses)
    console.print(table)
    _summary_line(report)


def _summary_line(report: dict[str, Any]) -> None:
    console.print(
        f"[green]ok[/]: {len(report['losses'])} tasks, {report['shared_numel']:,} shared "
        f"parameters in {len(report['layers'])} layers, {report['other_numel']:,} task-specific; "
        f"device {report['device']}."
    )
