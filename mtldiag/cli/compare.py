"""``mtldiag compare``."""

from __future__ import annotations

from pathlib import Path

import typer

from mtldiag.analysis.rules import load_rules
from mtldiag.cli.app import app, console, err_console, fail, guarded
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
from mtldiag.cli.profile import print_space
from mtldiag.cli.progress import make_observer
from mtldiag.cli.render import render_result
from mtldiag.engine.distributed import is_main
from mtldiag.errors import MtldiagError
from mtldiag.runs.compare import run_compare
from mtldiag.runs.resume import resume_compare
from mtldiag.spec import load_spec


def parse_seeds(text: str | None) -> list[int] | None:
    if text is None:
        return None
    parts = [p.strip() for p in text.split(",")]
    try:
        seeds = [int(p) for p in parts if p]
    except ValueError:
        raise MtldiagError(
            f"--seeds '{text}' is not a comma-separated list of whole numbers.",
            hint="for example --seeds 0,1,2",
        ) from None
    if not seeds:
        raise MtldiagError("--seeds is empty.", hint="for example --seeds 0,1,2")
    return seeds


@app.command()
@guarded
def compare(
    spec: Path | None = typer.Argument(None, help=SPEC_HELP, show_default=False),
    methods: str | None = typer.Option(
        None,
        "--methods",
        "-m",
        help="Comma list, e.g. ew,gradnorm,pcgrad,cagrad:c=0.4; a suffix @representation or "
        "@parameters sets one method's gradient space (mgda@representation) "
        "[spec: compare.methods].",
    ),
    steps: int | None = typer.Option(
        None,
        "--steps",
        "-n",
        help="Training steps per run [spec: compare.steps, else profile.steps].",
    ),
    seeds: str | None = typer.Option(
        None, "--seeds", help="Comma list of seeds, e.g. 0,1,2 [spec: compare.seeds]."
    ),
    single_task: bool | None = typer.Option(
        None,
        "--single-task/--no-single-task",
        help="Also train one model per task (for Δm% and negative transfer).",
    ),
    sweep: int | None = typer.Option(
        None, "--sweep", help="Add K linear-scalarization weight vectors as baselines."
    ),
    every: int | None = typer.Option(
        None, "--every", "-k", help="Instrument every K-th step [spec: compare.every, 10]."
    ),
    device: str | None = typer.Option(
        None, "--device", help="auto | cpu | cuda | cuda:N | mps [spec: device]."
    ),
    out: Path | None = typer.Option(
        None, "--out", "-o", help="Run directory [runs/<name>/<timestamp>]."
    ),
    check: bool = CHECK,
    rules: Path | None = RULES,
    baseline: Path | None = BASELINE,
    jobs: int | None = typer.Option(
        None, "--jobs", "-j", help="Worker processes, one device each [spec: compare.jobs, 1]."
    ),
    resume: Path | None = typer.Option(
        None,
        "--resume",
        help="Finish a stopped comparison in RUN_DIR with its recorded spec and options.",
    ),
    executor: str = typer.Option(
        "local",
        "--executor",
        help="local (this machine, --jobs workers) | ray (one Ray task per run).",
    ),
    ray_address: str | None = typer.Option(
        None, "--ray-address", help="Ray cluster to submit to (host:port) [a local Ray]."
    ),
    wrt: str | None = WRT,
    log: str | None = LOG,
    as_json: bool = AS_JSON,
    quiet: bool = QUIET,
    accumulate: int | None = ACCUMULATE,
    precision: str | None = PRECISION,
    clip_grad_norm: float | None = CLIP_NORM,
) -> None:
    """Train with each balancing method under identical seeds and data; rank them."""
    seed_list = parse_seeds(seeds)  # a malformed option is reported before reading the spec
    options = {
        "methods": methods,
        "seeds": seed_list,
        "steps": steps,
        "every": every,
        "single_task": single_task,
        "sweep": sweep,
        "device": device,
        "wrt": wrt,
    }
    how = {"jobs": jobs, "executor": executor, "ray_address": ray_address, "log": log}
    training = training_overrides(accumulate, precision, clip_grad_norm)
    if rules is not None:
        load_rules(rules)  # a bad rules file is refused before training, not after it
    with make_observer(err_console, quiet or as_json) as obs:
        if resume is not None:
            if out is not None:
                raise MtldiagError("--resume continues RUN_DIR: it takes no --out.")
            if training:
                raise MtldiagError(
                    "--resume trains the way the run was recorded: it takes no "
                    "--accumulate, --precision or --clip-grad-norm."
                )
            result = resume_compare(resume, spec, observer=obs, **how, **options)
        else:
            loaded = load_spec(spec, overrides=training)
            result = run_compare(loaded, out=out, observer=obs, **how, **options)
    if not is_main():  # torchrun: rank 0 reports
        return
    if not (as_json or quiet):
        print_space(err_console, result.summary)
    render_result(console, err_console, result.summary, result.run_dir, as_json, quiet)
    runs = result.summary.get("runs") or []
    if runs and not any(r.get("status") == "ok" for r in runs):
        first = next((r.get("error") for r in runs if r.get("error")), "")
        raise fail(
            f"every run failed; the first: {first}",
            hint="fix what the error names (a diverging loss: lower the learning rate); "
            "the records are kept",
            code=1,
        )
    if check or rules is not None or baseline is not None:
        to = err_console if as_json else console
        code = check_and_render(result.run_dir, rules, baseline, None, None, "table", to)
        if code:
            raise typer.Exit(code)
