"""``run_compare``: train the same model with each method under identical seeds and data order.

Every (method, seed) run rebuilds the model and the loader from the spec's factories under
that seed, so all runs with one seed start from the same weights and see the same batches in
the same order (``tests/test_compare.py`` checks it). Each run is instrumented like
``profile`` (every K-th step), is evaluated per task, and lands in one run directory.

Run labels: a method's label (``pcgrad``, ``cagrad:c=0.4``); ``single:<task>`` for the
single-task baselines; ``sweep:<w1>,<w2>,...`` for linear-scalarization sweep points. The
sweep label shows the point on the simplex (weights summing to 1); the run trains with those
weights times T, the sum convention of every other method (``ew`` is ``w_i = 1``), so that
the sweep point at the centre of the simplex *is* ``ew`` and no sweep point is handicapped by
a T-times smaller step.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from mtldiag.analysis.sweep import simplex_weights
from mtldiag.engine.device import autocast
from mtldiag.engine.distributed import setup_device
from mtldiag.errors import Interrupted, MtldiagError, TrainingError, UserCodeError
from mtldiag.rundir.schema import single_label, sweep_label
from mtldiag.rundir.summary import conclude_compare
from mtldiag.rundir.writer import RunWriter, default_run_dir, environment
from mtldiag.runs.build import build_loader
from mtldiag.runs.imports import resolve
from mtldiag.runs.losses import check_losses, label_stats
from mtldiag.runs.profile import (
    base_summary,
    close_run,
    create_method,
    open_run_trackers,
    resolved_spec,
)
from mtldiag.runs.train import (
    Observer,
    Prepared,
    move_to,
    prepare,
    run_context,
    train_run,
)
from mtldiag.spec import MethodSpec, Spec, load_spec, parse_methods, spec_to_yaml, values
from mtldiag.spec.values import OPTIONS
from mtldiag.trackers.factory import parse_sink_names
from mtldiag.trackers.hub import Trackers

EVAL_MAX_BATCHES = 200  # a validation pass reads at most this many batches


@dataclass(frozen=True)
class CompareResult:
    run_dir: Path
    summary: dict[str, Any]


@dataclass(frozen=True)
class PlannedRun:
    label: str
    seed: int
    method: MethodSpec
    tasks: tuple[str, ...] | None = None  # None: all tasks


def plan_runs(
    methods: Sequence[MethodSpec],
    seeds: Sequence[int],
    tasks: Sequence[str],
    single_task: bool,
    sweep_weights: Sequence[Sequence[float]],
) -> list[PlannedRun]:
    """Every run of a comparison, seed-major so that partial results cover all methods."""
    runs: list[PlannedRun] = []
    n = len(tasks)
    for seed in seeds:
        for m in methods:
            runs.append(PlannedRun(m.label, seed, m))
        for w in sweep_weights:
            label = sweep_label(w)
            scaled = [float(x) * n for x in w]
            fixed = MethodSpec("fixed", {"weights": dict(zip(tasks, scaled, strict=True))})
            runs.append(PlannedRun(label, seed, fixed))
        if single_task:
            for t in tasks:
                runs.append(PlannedRun(single_label(t), seed, MethodSpec("ew"), (t,)))
    return runs


def evaluate(
    spec: Spec, prep: Prepared, tasks: Sequence[str], val_loader: Any, run: dict[str, Any]
) -> tuple[dict[str, float | None], str]:
    """Per-task metric of a trained model and which evaluation produced it."""
    model = prep.model
    if spec.eval is not None:
        fn = resolve(spec.eval, spec.base_dir, what="eval")
        model.eval()
        try:
            with torch.no_grad():
                values = fn(model, val_loader if val_loader is not None else prep.loader)
        except Exception as exc:
            raise UserCodeError(f"eval '{spec.eval}' raised {type(exc).__name__}: {exc}") from exc
        finally:
            model.train()
        if not isinstance(values, dict) or set(tasks) - set(values):
            got = ", ".join(map(str, values)) if isinstance(values, dict) else type(values).__name__
            raise UserCodeError(
                f"eval '{spec.eval}' must return {{task: value}} for {', '.join(tasks)}; "
                f"it returned: {got}."
            )
        out: dict[str, float | None] = {}
        for t in tasks:
            try:
                out[t] = float(values[t])
            except (TypeError, ValueError):
                raise UserCodeError(
                    f"eval '{spec.eval}' returned {values[t]!r} for task '{t}'; "
                    "expected a number (or a one-element tensor)."
                ) from None
        return out, "eval_fn"
    if val_loader is not None:
        return _val_losses(spec, prep, tasks, val_loader), "val_loss"
    return {t: run["final_loss"].get(t) for t in tasks}, "train_loss_tail"


def _val_losses(
    spec: Spec, prep: Prepared, tasks: Sequence[str], loader: Any
) -> dict[str, float | None]:
    sums = dict.fromkeys(tasks, 0.0)
    n = 0
    prep.model.eval()
    try:
        with torch.no_grad():
            for i, batch in enumerate(loader):
                if i >= EVAL_MAX_BATCHES:
                    break
                with autocast(prep.device, spec.precision):
                    raw = prep.loss_fn(prep.model, move_to(batch, prep.device))
                losses = check_losses(raw, tasks, require_grad=False)
                for t in tasks:
                    sums[t] += float(losses[t])
                n += 1
    finally:
        prep.model.train()
    if n == 0:
        raise UserCodeError("the validation loader (data.val) is empty.")
    return {t: sums[t] / n for t in tasks}


def run_compare(
    spec: Spec | str | Path | None = None,
    *,
    methods: str | Sequence[Any] | None = None,
    seeds: Sequence[int] | None = None,
    steps: int | None = None,
    every: int | None = None,
    single_task: bool | None = None,
    sweep: int | None = None,
    out: str | Path | None = None,
    device: str | None = None,
    observer: Observer | None = None,
    log: str | list[str] | None = None,
) -> CompareResult:
    """Train with each method (and baselines) and write a comparison run directory.

    Keyword arguments override the spec's ``compare:`` section (``log``: trackers, else the
    spec's ``log:``). A run that diverges is
    marked failed (step and task in its ``error``) and the others go on; Ctrl-C keeps
    every finished run and raises :class:`~mtldiag.errors.Interrupted`.
    """
    spec = spec if isinstance(spec, Spec) else load_spec(spec)
    if device is not None:
        spec = replace(spec, device=device, raw={**spec.raw, "device": device})
    cfg = spec.compare
    if methods is not None:
        # Hyper-parameters from the spec (top-level `methods:` and `compare.hyperparams`)
        # apply to methods named on the command line too.
        section = spec.raw.get("compare") if isinstance(spec.raw.get("compare"), dict) else {}
        hp = {**spec.method_hparams, **(section.get("hyperparams") or {})}
        method_specs = parse_methods(methods, hp)
    else:
        method_specs = cfg.methods
    if not method_specs:
        raise MtldiagError(
            "no methods to compare.",
            hint="pass --methods ew,pcgrad,mgda or set compare.methods in the spec",
        )
    labels = [m.label for m in method_specs]
    twice = sorted({x for x in labels if labels.count(x) > 1})
    if twice:
        raise MtldiagError(
            f"method {', '.join(twice)} is listed more than once.",
            hint="list each method once; seeds repeat it",
        )
    for ms in method_specs:
        create_method(ms)  # fail on a bad name or hyper-parameter before any training
    seed_list = list(seeds) if seeds is not None else list(cfg.seeds)
    if not seed_list:
        raise MtldiagError("--seeds is empty.", hint="for example --seeds 0,1,2")
    if len(set(seed_list)) != len(seed_list):
        raise MtldiagError(
            f"--seeds repeats a seed: {seed_list}.",
            hint="a repeated seed reruns the very same run; for example --seeds 0,1,2",
        )
    if seeds is not None:
        seed_list = [values.seed(OPTIONS, "--seeds", s) for s in seed_list]
    if steps is not None:
        values.steps(OPTIONS, "--steps", steps)
    if every is not None:
        values.every(OPTIONS, "--every", every)
    n_steps = steps if steps is not None else (cfg.steps or spec.profile.steps)
    n_every = every if every is not None else cfg.every
    want_single = cfg.single_task if single_task is None else single_task
    n_sweep = cfg.sweep if sweep is None else sweep
    if n_sweep < 0:
        raise MtldiagError(f"--sweep must be 0 (none) or more, not {n_sweep}.")
    dev = setup_device(spec.device)  # under torchrun: process group, this rank's device

    first = prepare(spec, seed_list[0], dev)
    tasks = first.tasks
    stats = label_stats(spec, first.loader)
    for ms in method_specs:
        # reset() checks what the run must feed the method (fixed weights naming the
        # spec's tasks, prior losses...): a bad one is bad input, found before any training.
        create_method(ms).reset(run_context(first, stats, n_steps))
    sweep_w: list[list[float]] = []
    if n_sweep:
        sweep_w = [list(map(float, w)) for w in simplex_weights(len(tasks), n_sweep, seed_list[0])]
    plan = plan_runs(method_specs, seed_list, tasks, want_single, sweep_w)
    val_ref = spec.val

    run_dir = Path(out) if out is not None else default_run_dir(spec.name)
    resolved = {
        "methods": [m.label for m in method_specs],
        "seeds": seed_list,
        "steps": n_steps,
        "every": n_every,
        "single_task": want_single,
        "sweep": n_sweep,
    }
    names = parse_sink_names(log) if log is not None else spec.log
    # A default name is made unique when the folder is created; --out is taken as given. The
    # folder is claimed (empty, locked) before the trackers open: TensorBoard writes inside it.
    writer = RunWriter(run_dir, tasks, fresh=out is None)
    run_dir = writer.claim()
    trackers = open_run_trackers(writer, names, spec, "compare", resolved)
    writer.open(spec_to_yaml(resolved_spec(spec, "compare", resolved)), environment(dev))
    summary = base_summary(spec, "compare", tasks, first.selection.layout, str(dev))
    summary["compare"] = resolved
    evaluation = None
    if hasattr(observer, "set_total"):
        observer.set_total(len(plan))  # type: ignore[union-attr]
    try:
        for pr in plan:
            prep = first if (pr is plan[0]) else prepare(spec, pr.seed, dev, shared=first.selection)
            method = create_method(pr.method)
            run_tasks = list(pr.tasks) if pr.tasks else tasks
            trackers.start_run(pr.label, pr.seed, run_tasks)
            try:
                run = train_run(
                    prep,
                    method,
                    pr.label,
                    n_steps,
                    n_every,
                    writer,
                    observer,
                    tasks=pr.tasks,
                    stats=stats,
                    trackers=trackers,
                )
            except TrainingError as exc:
                run = exc.run_result  # type: ignore[attr-defined]
                summary["runs"].append(run)
                trackers.end_run(run)
                continue
            val_loader = build_loader(spec, pr.seed, val_ref) if val_ref is not None else None
            metrics, evaluation = evaluate(spec, prep, run_tasks, val_loader, run)
            run["metrics"] = metrics
            summary["runs"].append(run)
            trackers.end_run(run)
    except KeyboardInterrupt as exc:
        partial = getattr(exc, "run_result", None)
        if partial is not None:
            summary["runs"].append(partial)
        trackers.end_run(partial)
        _finish(writer, summary, spec, tasks, evaluation, "interrupted", trackers)
        raise Interrupted(
            f"interrupted; {len(summary['runs'])} run(s) are kept in {run_dir}.",
            hint=f"mtldiag report {run_dir} rebuilds the report from them",
        ) from None
    finally:
        writer.close()
    _finish(writer, summary, spec, tasks, evaluation, "complete", trackers)
    return CompareResult(run_dir, summary)


def _finish(
    writer: RunWriter,
    summary: dict[str, Any],
    spec: Spec,
    tasks: list[str],
    evaluation: str | None,
    status: str,
    trackers: Trackers | None = None,
) -> None:
    # Higher-is-better comes with the spec's eval function; losses are lower-is-better.
    hib = {t.name: t.higher_is_better for t in spec.tasks} if spec.eval else {}
    conclude_compare(summary, status, evaluation, {t: hib.get(t, False) for t in tasks})
    close_run(writer, summary, trackers)
