"""One (method, seed) run of a comparison as a self-contained job: what any executor runs.

A :class:`RunJob` holds everything a run needs and nothing that cannot cross a process
boundary (no model, no tensors): the spec, the planned run, the step counts, the label
statistics and the *names* of the shared parameters. :func:`execute_job` builds the model and
loader under the run's seed, trains, evaluates and returns a :class:`JobOutcome`. In the
parent process it writes straight into the run directory; in a worker (process pool, Ray) it
records the rows in a :class:`RecordingWriter` and the parent replays them
(:func:`replay`), so the parent stays the only writer of the run directory, and into the
trackers (:func:`replay_trackers`), so they get the same steps as from an in-process run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from mtldiag.engine import distributed
from mtldiag.engine.gramian import ALL_LAYERS, StepMetrics
from mtldiag.engine.jacobian import SharedLayout
from mtldiag.engine.representation import metric_layers, space_of
from mtldiag.engine.shared import SharedSelection
from mtldiag.errors import TrainingError, UserCodeError
from mtldiag.methods.base import TaskStats
from mtldiag.methods.syntax import MethodSpec
from mtldiag.rundir.accumulate import RunAccumulator
from mtldiag.rundir.writer import RunWriter
from mtldiag.runs.build import build_loader
from mtldiag.runs.evaluate import evaluate
from mtldiag.runs.profile import create_method
from mtldiag.runs.train import NullObserver, Observer, Prepared, prepare, train_run
from mtldiag.spec import Spec
from mtldiag.trackers.hub import Trackers


@dataclass(frozen=True)
class PlannedRun:
    """One entry of a comparison's plan: a label, a seed, a method and the tasks it trains."""

    label: str
    seed: int
    method: MethodSpec
    tasks: tuple[str, ...] | None = None  # None: all tasks


@dataclass(frozen=True)
class RunJob:
    """A planned run with what it needs to train anywhere (picklable: no tensors)."""

    index: int  # position in the plan: results are put back in plan order
    run: PlannedRun
    spec: Spec
    steps: int
    every: int
    stats: dict[str, TaskStats]
    shared: SharedSelection  # names only (see names_only): every run uses the same columns
    tasks: tuple[str, ...] = ()  # the comparison's tasks (a run may train a subset)
    device: str = "cpu"
    threads: int | None = None  # torch threads in a worker; None: leave as is
    representation: str | None = None  # the module whose output is z (representation mode)


@dataclass
class JobOutcome:
    """A finished job: its summary entry, which evaluation made its metric, its CSV rows."""

    index: int
    run: dict[str, Any]
    evaluation: str | None = None
    rows: list[tuple[Any, ...]] = field(default_factory=list)  # RunWriter.write_step arguments


def names_only(selection: SharedSelection) -> SharedSelection:
    """The selection without its tensors: the names a worker's model is matched by."""
    layout = SharedLayout(selection.layout.names, (), (), dict(selection.layout.layer_slices))
    return SharedSelection(layout, (), (), dict(selection.reached_by))


class RecordingWriter:
    """Keeps the rows a run would write, for the parent to write (a worker never writes)."""

    enabled = True

    def __init__(self) -> None:
        self.rows: list[tuple[Any, ...]] = []

    def write_step(
        self,
        method: str,
        seed: int,
        step: int,
        time_ms: float,
        memory_mb: float,
        losses: Any,
        weights: Any,
        metrics: StepMetrics | None,
        tasks: Any = None,
        lr: float | None = None,
    ) -> None:
        row = (method, seed, step, time_ms, memory_mb, losses, weights, metrics, tasks, lr)
        self.rows.append(row)


class _HeldFinish:
    """Passes the trainer's progress on but holds ``run_finished`` until the run is evaluated,
    so that a run whose evaluation fails is shown failed, not ok."""

    def __init__(self, inner: Observer) -> None:
        self.inner = inner

    def run_started(self, label: str, seed: int, steps: int) -> None:
        self.inner.run_started(label, seed, steps)

    def step_done(self, step: int, losses: dict[str, float]) -> None:
        self.inner.step_done(step, losses)

    def run_finished(self, result: dict[str, Any]) -> None:
        pass  # execute_job reports the evaluated result


def failed_outcome(job: RunJob, error: str) -> JobOutcome:
    """The record of a run that stopped outside the trainer (its worker died, its task failed)."""
    tasks = list(job.run.tasks or job.tasks)
    layers = metric_layers(job.representation, job.shared.layout.layers)
    acc = RunAccumulator(job.run.label, job.run.seed, tasks, [ALL_LAYERS, *layers])
    acc.fail("failed", error)
    run = acc.result()
    run["jacobian"] = space_of(job.representation)
    return JobOutcome(job.index, run)


def replay(outcome: JobOutcome, writer: RunWriter) -> None:
    """Write a worker's recorded rows into the run directory, in the order they were made."""
    for row in outcome.rows:
        writer.write_step(*row)


def replay_trackers(job: RunJob, outcome: JobOutcome, trackers: Trackers) -> None:
    """Give the trackers a worker's run as an in-process run gives it: its start, one step per
    recorded row (:meth:`Trackers.log_row`, the call an in-process run's writer makes for
    each row it writes), its end. A run whose worker died has no rows: start and end only."""
    trackers.start_run(job.run.label, job.run.seed, list(job.run.tasks or job.tasks))
    for row in outcome.rows:
        trackers.log_row(*row)
    trackers.end_run(outcome.run)


def execute_job(
    job: RunJob,
    writer: RunWriter | RecordingWriter,
    observer: Observer | None = None,
    prep: Prepared | None = None,
    trackers: Trackers | None = None,
) -> JobOutcome:
    """Train, evaluate and return one run; a diverging or failing run returns its record, as
    does one whose evaluation (the user's eval function, data.val) raises.

    ``prep``: the run's model and loader when the caller already built them (the parent's
    first run). Ctrl-C propagates with the partial record as ``.run_result``.
    """
    if job.threads is not None:
        torch.set_num_threads(job.threads)
    pr, spec = job.run, job.spec
    dev = torch.device(job.device)
    if prep is None:
        prep = prepare(spec, pr.seed, dev, shared=job.shared)
    tasks = list(pr.tasks) if pr.tasks else prep.tasks
    outcome = _train_and_evaluate(
        job, prep, tasks, writer, _HeldFinish(observer or NullObserver()), trackers
    )
    if observer is not None:
        observer.run_finished(outcome.run)
    return outcome


def _train_and_evaluate(
    job: RunJob,
    prep: Prepared,
    tasks: list[str],
    writer: RunWriter | RecordingWriter,
    observer: Observer,
    trackers: Trackers | None,
) -> JobOutcome:
    pr, spec = job.run, job.spec
    method = create_method(pr.method)
    try:
        run = train_run(
            prep,
            method,
            pr.label,
            job.steps,
            job.every,
            writer,  # type: ignore[arg-type]
            observer,
            tasks=pr.tasks,
            stats=job.stats,
            representation=job.representation,
            trackers=trackers,
        )
    except TrainingError as exc:
        if not exc.everywhere and distributed.context() is not None:
            # This rank alone may have failed: the others wait in a collective of this run,
            # so the comparison cannot go on to the next run; the error stops every rank.
            raise
        return JobOutcome(job.index, exc.run_result)  # type: ignore[attr-defined]
    try:
        val_loader = build_loader(spec, pr.seed, spec.val) if spec.val is not None else None
        metrics, evaluation = evaluate(spec, prep, tasks, val_loader, run)
    except UserCodeError as exc:
        # The user's eval function or validation loader broke after training: this run fails
        # alone (its rows are written, its training summary kept) and the comparison goes on.
        run["status"] = "failed"
        run["error"] = f"{pr.label} (seed {pr.seed}) in evaluation after step {job.steps}: " + (
            exc.message
        )
        return JobOutcome(job.index, run)
    run["metrics"] = metrics
    return JobOutcome(job.index, run, evaluation)
