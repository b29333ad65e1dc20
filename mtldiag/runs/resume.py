"""``compare --resume RUN_DIR``: finish a comparison that was stopped, with what it recorded.

The run directory holds the resolved spec (``spec.yaml``, read relative to the original spec's
folder, ``summary["compare"]["spec_path"]``) and the options (``summary["compare"]``). Runs with
status ``ok`` are kept with their CSV rows; the rows of every other run (failed, interrupted)
are dropped and those runs, and the ones never started, train again. Options or a spec that
differ from the record are refused: a resumed comparison must be the comparison it continues.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mtldiag.errors import MtldiagError
from mtldiag.rundir.load import load_run
from mtldiag.runs.compare import (
    CompareResult,
    compare_options,
    execute_compare,
    make_executor,
    open_compare_dir,
    prepare_compare,
)
from mtldiag.runs.evaluate import evaluation_kind
from mtldiag.runs.profile import resolved_spec
from mtldiag.runs.train import Observer
from mtldiag.spec import Spec, load_spec, parse_methods, parse_spec

NOT_RECORDED = {"compare.jobs"}  # how the runs were executed, not what they are
_RESOLVED = ("methods", "seeds", "steps", "every", "single_task", "sweep")


def differing_keys(a: Any, b: Any, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two nested mappings."""
    if not (isinstance(a, dict) and isinstance(b, dict)):
        return [] if a == b else [prefix or "<spec>"]
    out: list[str] = []
    for k in list(a) + [k for k in b if k not in a]:
        key = f"{prefix}.{k}" if prefix else str(k)
        if key in NOT_RECORDED:
            continue
        out += differing_keys(a.get(k), b.get(k), key)
    return out


def read_record(run_dir: Path) -> tuple[dict[str, Any], Spec]:
    """The comparison's summary and its spec; a folder that is not a compare run is refused."""
    hint = "pass the run directory that mtldiag compare printed (runs/<name>/<timestamp>)"
    if not run_dir.is_dir():
        raise MtldiagError(f"--resume: '{run_dir}' is not a directory.", hint=hint)
    try:
        data = load_run(run_dir)
    except MtldiagError:  # neither a summary nor records
        data = None
    summary = data.summary if data is not None else None
    if data is None or summary is None or summary.get("kind") != "compare" or data.spec is None:
        raise MtldiagError(
            f"--resume: '{run_dir}' is not a compare run (no compare summary.json and spec.yaml).",
            hint=hint,
        )
    asked = summary.get("compare")
    if not isinstance(asked, dict) or any(k not in asked for k in _RESOLVED):
        raise MtldiagError(
            f"--resume: '{run_dir}' has no record of what the comparison asked in its "
            "summary.json (rebuilt by an older `mtldiag report`).",
            hint=f"`mtldiag report {run_dir} --rebuild` restores it from spec.yaml",
        )
    recorded = asked.get("spec_path")
    path = Path(recorded) if recorded else None
    return summary, parse_spec(data.spec, source=str(run_dir / "spec.yaml"), path=path)


def _option_diffs(
    record: dict[str, Any], spec: Spec, given: dict[str, Any], record_wrt: str
) -> list[str]:
    out = []
    for key, value in given.items():
        if value is None:
            continue
        if key == "methods":
            value = [m.label for m in parse_methods(value, spec.method_hparams)]
        if key == "seeds":
            value = list(value)
        if key == "wrt":
            if value != record_wrt:
                out.append("wrt")
            continue
        if key == "device":
            if value != spec.raw.get("device", "auto"):
                out.append("device")
            continue
        if record.get(key) != value:
            out.append(key)
    return out


def resume_compare(
    run_dir: str | Path,
    spec: Spec | str | Path | None = None,
    *,
    observer: Observer | None = None,
    jobs: int | None = None,
    executor: str = "local",
    ray_address: str | None = None,
    log: str | list[str] | None = None,
    **options: Any,
) -> CompareResult:
    """Run what a stopped comparison did not finish; rebuild its summary and report.

    ``options`` (``methods``, ``seeds``, ``steps``, ``every``, ``single_task``, ``sweep``,
    ``device``) and ``spec`` may be given only to confirm the record: a difference is refused
    with the differing keys.
    """
    run_dir = Path(run_dir)
    summary, recorded = read_record(run_dir)
    record = summary["compare"]
    # The default space as recorded (older records: the summary's, never "mixed" there).
    wrt = str(record.get("wrt") or summary.get("jacobian") or "parameters")
    diffs = _option_diffs(record, recorded, options, wrt)
    if spec is not None:
        given = spec if isinstance(spec, Spec) else load_spec(spec)
        # The recorded spec.yaml carries the resolved options (runs.profile.resolved_spec):
        # resolve the given spec the same way so only a real difference shows.
        given = resolved_spec(given, "compare", {k: record[k] for k in _RESOLVED if k in record})
        diffs += differing_keys(given.raw, recorded.raw)
    if diffs:
        raise MtldiagError(
            f"--resume: {', '.join(dict.fromkeys(diffs))} differ(s) from what {run_dir} recorded.",
            hint="resume without them (the record is used), or start a new comparison",
        )
    opts = compare_options(
        recorded,
        methods=record["methods"],
        seeds=record["seeds"],
        steps=record["steps"],
        every=record["every"],
        single_task=record["single_task"],
        sweep=record["sweep"],
        wrt=wrt,
    )
    runner = make_executor(
        recorded, recorded.compare.jobs if jobs is None else jobs, executor, ray_address
    )
    setup = prepare_compare(recorded, opts, wrt)
    planned = {(j.run.label, j.run.seed) for j in setup.jobs}
    kept = [
        r
        for r in summary.get("runs", [])
        if r.get("status") == "ok" and (r.get("method"), r.get("seed")) in planned
    ]
    if kept and summary.get("evaluation") not in (None, evaluation_kind(recorded)):
        # A summary rebuilt from the CSVs holds the training loss's tail as every run's metric
        # (the eval function or data.val cannot run without the trained model). Kept beside
        # newly evaluated runs it would mix two metrics in one table: train them again.
        kept = []
    writer, fresh, trackers = open_compare_dir(
        setup, run_dir, kept, resume=True, log=log, executor=runner
    )
    if kept:
        fresh["evaluation"] = summary.get("evaluation")
    return execute_compare(setup, runner, writer, fresh, observer, trackers)
