"""``run_compare``: train the same model with each method under identical seeds and data order.

Every (method, seed) run rebuilds the model and the loader from the spec's factories under
that seed, so all runs with one seed start from the same weights and see the same batches in
the same order (``tests/test_compare.py`` checks it). Each run is instrumented like
``profile`` (every K-th step), is evaluated per task, and lands in one run directory.

The plan (options, run labels, run order) is :mod:`mtldiag.runs.plan`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from mtldiag.analysis.sweep import simplex_weights
from mtldiag.engine.distributed import setup_device
from mtldiag.engine.representation import REPRESENTATION_LAYER, choose_representation, space_of
from mtldiag.errors import Interrupted, MtldiagError, SpecError
from mtldiag.methods.base import TaskStats
from mtldiag.rundir.schema import summary_space
from mtldiag.rundir.summary import conclude_compare
from mtldiag.rundir.writer import RunWriter, default_run_dir, environment
from mtldiag.runs.executors import (
    Executor,
    PoolExecutor,
    RayExecutor,
    SerialExecutor,
    worker_devices,
)
from mtldiag.runs.imports import resolve
from mtldiag.runs.jobs import JobOutcome, RunJob, names_only, replay_trackers
from mtldiag.runs.losses import label_stats
from mtldiag.runs.plan import CompareOptions, compare_options, plan_runs
from mtldiag.runs.profile import (
    base_summary,
    close_run,
    create_method,
    open_run_trackers,
    resolved_spec,
)
from mtldiag.runs.train import Observer, Prepared, prepare, run_context
from mtldiag.spec import MethodSpec, Spec, load_spec, spec_to_yaml
from mtldiag.trackers.factory import parse_sink_names
from mtldiag.trackers.hub import Trackers

EXECUTORS = ("local", "ray")


@dataclass(frozen=True)
class CompareResult:
    run_dir: Path
    summary: dict[str, Any]


@dataclass
class CompareSetup:
    """A planned comparison: the first run's model (built to find tasks and shared layers), the
    label statistics every run's method sees, and one job per planned run."""

    spec: Spec
    options: CompareOptions
    first: Prepared
    stats: dict[str, TaskStats]
    jobs: list[RunJob]
    representation: str | None = None  # the default space's module (None: parameters)

    @property
    def tasks(self) -> list[str]:
        return self.first.tasks

    @property
    def spaces(self) -> list[str]:
        """The gradient spaces of the planned runs (``parameters``, ``representation``)."""
        kinds = (space_of(j.representation) for j in self.jobs)
        return list(dict.fromkeys(kinds))

    @property
    def default_space(self) -> str:
        """The space of a run whose method names none (``--wrt``, else the spec)."""
        return space_of(self.representation)


def prepare_compare(spec: Spec, options: CompareOptions, wrt: str | None = None) -> CompareSetup:
    """Step 2, prepare: build the first run's model, check every method against it, plan jobs.

    ``wrt``: ``representation`` | ``parameters`` (default: the spec's ``representation:``).
    """
    if spec.eval is not None:  # an eval that cannot be imported is bad input: before training
        resolve(spec.eval, spec.base_dir, what="eval")
    dev = setup_device(spec.device)  # under torchrun: process group, this rank's device
    first = prepare(spec, options.seeds[0], dev)
    rep, by_space = _representations(first, spec, options.methods, wrt)
    stats = label_stats(spec, first.loader)
    for ms in options.methods:
        # reset() checks what the run must feed the method (fixed weights naming the
        # spec's tasks, prior losses...): a bad one is bad input, found before any training.
        create_method(ms).reset(run_context(first, stats, options.steps))
    sweep_w: list[list[float]] = []
    if options.sweep:
        weights = simplex_weights(len(first.tasks), options.sweep, options.seeds[0])
        sweep_w = [list(map(float, w)) for w in weights]
    plan = plan_runs(options.methods, options.seeds, first.tasks, options.single_task, sweep_w)
    shared = names_only(first.selection)
    tasks = tuple(first.tasks)
    jobs = [
        RunJob(
            i,
            pr,
            spec,
            options.steps,
            options.every,
            stats,
            shared,
            tasks,
            str(dev),
            None,
            by_space[pr.method.wrt] if pr.method.wrt else rep,  # a method's own space wins
        )
        for i, pr in enumerate(plan)
    ]
    return CompareSetup(spec, options, first, stats, jobs, rep)


def _representations(
    first: Prepared, spec: Spec, methods: Sequence[MethodSpec], wrt: str | None
) -> tuple[str | None, dict[str, str | None]]:
    """The default space's module (``None``: parameters), and each space's module for the
    methods that name one (``@representation``: the spec's ``representation:``, else ``auto``)."""
    names = first.selection.layout.names
    default = choose_representation(first.model, names, spec.representation, wrt)
    if default is not None or not any(m.wrt == "representation" for m in methods):
        return default, {"parameters": None, "representation": default}
    module = choose_representation(first.model, names, spec.representation, "representation")
    if REPRESENTATION_LAYER in first.selection.layout.layers:
        # Both spaces' metrics are keyed by layer name: a shared layer of that name would mix.
        raise SpecError(
            f"a shared layer is named '{REPRESENTATION_LAYER}', the name representation-space "
            "metrics use: one comparison cannot hold both spaces.",
            hint="compare the two spaces in two runs (--wrt representation, --wrt parameters)",
        )
    return default, {"parameters": None, "representation": module}


def make_executor(
    spec: Spec, jobs: int = 1, executor: str = "local", ray_address: str | None = None
) -> Executor:
    """``local`` with one job: in this process; with N: N worker processes; ``ray``: Ray tasks.

    Called before anything is built, so that bad execution options (``--jobs 0``, more jobs
    than a pinned device, an unreachable Ray cluster) cost nothing.
    """
    if executor == "ray":
        ray = RayExecutor(ray_address)
        ray.connect()
        return ray
    if executor not in EXECUTORS:
        raise MtldiagError(f"--executor '{executor}' is not an executor.", hint="use local or ray")
    devices = worker_devices(spec.device, jobs)
    return SerialExecutor() if jobs == 1 else PoolExecutor(devices)


def open_compare_dir(
    setup: CompareSetup,
    out: str | Path | None,
    kept: Sequence[dict[str, Any]] = (),
    resume: bool = False,
    log: str | list[str] | None = None,
    executor: Executor | None = None,
) -> tuple[RunWriter, dict[str, Any], Trackers]:
    """Step 3a: the run directory (a new one, or, ``resume``, one whose ``kept`` runs stay)
    and the trackers (``log``, else the spec's ``log:``). ``executor``: where the runs will
    train, recorded in env.json when it is not this process."""
    spec = setup.spec
    run_dir = Path(out) if out is not None else default_run_dir(spec.name)
    names = parse_sink_names(log) if log is not None else spec.log
    # A default name is made unique when the folder is created; --out is taken as given. The
    # folder is claimed (empty, locked) before the trackers open: TensorBoard writes inside it.
    writer = RunWriter(run_dir, setup.tasks, fresh=out is None)
    writer.claim(resume=resume)
    recorded = setup.options.record()
    trackers = open_run_trackers(writer, names, spec, "compare", recorded)
    keep = [(r["method"], r["seed"]) for r in kept] if resume else None
    resolved = resolved_spec(spec, "compare", recorded)
    env = environment(setup.first.device)
    if isinstance(executor, PoolExecutor):
        # env.json's device and threads are this process's; the runs trained in the workers.
        env["workers"] = list(executor.devices)
        if executor.threads is not None:
            env["worker_threads"] = executor.threads
    writer.open(spec_to_yaml(resolved), env, keep)
    summary = base_summary(
        spec,
        "compare",
        setup.tasks,
        setup.first.selection.layout,
        str(setup.first.device),
        spaces=setup.spaces,
    )
    summary["compare"] = {
        **setup.options.record(),
        "wrt": setup.default_space,
        "spec_path": str(spec.path) if spec.path is not None else None,
    }
    summary["jacobian"] = summary_space(setup.spaces)
    summary["runs"] = list(kept)
    return writer, summary, trackers


def execute_compare(
    setup: CompareSetup,
    executor: Executor,
    writer: RunWriter,
    summary: dict[str, Any],
    observer: Observer | None = None,
    trackers: Trackers | None = None,
) -> CompareResult:
    """Step 3b-4, execute and finish: run every job whose run is not in ``summary`` yet.

    Runs land in ``summary["runs"]`` in plan order whatever order they finish in, and
    ``summary.json`` is rewritten (status ``interrupted``) after each, so a killed comparison
    keeps its finished runs for ``--resume``. Ctrl-C keeps them too and raises
    :class:`~mtldiag.errors.Interrupted`. ``trackers`` get every step of every run, the
    same stream wherever it trains: in this process as each row is written, from worker
    processes or Ray tasks when the run comes back (its recorded rows, replayed in order,
    then its summary entry).
    """
    trackers = trackers or Trackers()
    in_process = isinstance(executor, SerialExecutor)
    if in_process:
        executor.trackers = trackers
    order = {(j.run.label, j.run.seed): j.index for j in setup.jobs}
    done = {(r["method"], r["seed"]) for r in summary["runs"]}
    todo = [j for j in setup.jobs if (j.run.label, j.run.seed) not in done]
    evaluation: list[str | None] = [summary.get("evaluation")]

    def on_done(outcome: JobOutcome) -> None:
        if not in_process:  # the serial executor fed the trackers as the run trained
            replay_trackers(setup.jobs[outcome.index], outcome, trackers)
        summary["runs"].append(outcome.run)
        summary["runs"].sort(key=lambda r: order.get((r["method"], r["seed"]), len(order)))
        if outcome.evaluation is not None:
            evaluation[0] = outcome.evaluation
        writer.write_summary({**summary, "status": "interrupted", "evaluation": evaluation[0]})

    if hasattr(observer, "set_total"):
        observer.set_total(len(todo))  # type: ignore[union-attr]
    spec = setup.spec
    try:
        executor.execute(todo, writer, observer, on_done)
    except KeyboardInterrupt:
        _finish(writer, summary, spec, setup.tasks, evaluation[0], "interrupted", trackers)
        # A run cut short is recorded (status interrupted) but not kept: --resume reruns it.
        kept = sum(r["status"] == "ok" for r in summary["runs"])
        raise Interrupted(
            f"interrupted; {kept} run(s) are kept in {writer.path}.",
            hint=f"mtldiag compare --resume {writer.path} runs the others",
        ) from None
    finally:
        writer.close()
    _finish(writer, summary, spec, setup.tasks, evaluation[0], "complete", trackers)
    return CompareResult(writer.path, summary)


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
    jobs: int | None = None,
    executor: str = "local",
    ray_address: str | None = None,
    wrt: str | None = None,
    log: str | list[str] | None = None,
) -> CompareResult:
    """Train with each method (and baselines) and write a comparison run directory.

    Keyword arguments override the spec's ``compare:`` section. ``jobs``: worker processes on
    this machine (spec ``compare.jobs``, default 1: in this process); ``executor="ray"``: Ray
    tasks on the cluster at ``ray_address`` (default: a local Ray). A run that diverges is
    marked failed (step and task in its ``error``) and the others go on; Ctrl-C keeps every
    finished run and raises :class:`~mtldiag.errors.Interrupted`. ``wrt``: ``representation``
    runs every method on the gradients w.r.t. the spec's ``representation:`` module (default
    ``auto``), ``parameters`` on the shared parameters. ``log``: trackers, else the spec's
    ``log:``.
    """
    spec = spec if isinstance(spec, Spec) else load_spec(spec)
    if device is not None:
        spec = replace(spec, device=device, raw={**spec.raw, "device": device})
    options = compare_options(spec, methods, seeds, steps, every, single_task, sweep, wrt)
    n_jobs = jobs if jobs is not None else spec.compare.jobs
    runner = make_executor(spec, n_jobs, executor, ray_address)
    setup = prepare_compare(spec, options, wrt)
    if isinstance(runner, SerialExecutor):
        runner.first = setup.first  # the model built to plan is the first run's: reuse it
    writer, summary, trackers = open_compare_dir(setup, out, log=log, executor=runner)
    return execute_compare(setup, runner, writer, summary, observer, trackers)


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
