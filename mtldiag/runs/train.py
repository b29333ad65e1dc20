"""The training loop of ``profile`` and ``compare``: batches, method, probe, optimizer step,
schedule, records. Each optimizer step: K micro-batches through the probe (the method fills
``.grad``), clipping, the (scaled) optimizer step, the LR schedule."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch import nn

from mtldiag.engine import distributed
from mtldiag.engine.device import StepTimer, peak_memory_mb, reset_peak_memory
from mtldiag.engine.gramian import ALL_LAYERS
from mtldiag.engine.probe import GradientProbe, ProbeStep
from mtldiag.engine.representation import RepresentationHook, metric_layers, space_of
from mtldiag.errors import MtldiagError, TrainingError, UserCodeError
from mtldiag.methods.base import Method, TaskStats, WeightingMethod
from mtldiag.rundir.accumulate import RunAccumulator
from mtldiag.rundir.writer import RunWriter
from mtldiag.runs.build import BatchCycle, build_optimizer, build_scheduler, move_to
from mtldiag.runs.losses import label_stats
from mtldiag.runs.prepare import Prepared, compute_losses, has_unused, prepare, run_context
from mtldiag.trackers.hub import TrackedWriter, Trackers

# Callers import these from here (the loop's public face).
__all__ = [
    "NullObserver",
    "Observer",
    "Prepared",
    "compute_losses",
    "move_to",
    "prepare",
    "run_context",
    "train_run",
]


class Observer(Protocol):
    """Progress callbacks; the CLI plugs in Rich bars, library callers may pass nothing."""

    def run_started(self, label: str, seed: int, steps: int) -> None: ...
    def step_done(self, step: int, losses: dict[str, float]) -> None: ...
    def run_finished(self, result: dict[str, Any]) -> None: ...


class NullObserver:
    def run_started(self, label: str, seed: int, steps: int) -> None:
        pass

    def step_done(self, step: int, losses: dict[str, float]) -> None:
        pass

    def run_finished(self, result: dict[str, Any]) -> None:
        pass


@dataclass
class _Loop:
    """One run's training state: what each step reads and advances."""

    prep: Prepared
    label: str
    tasks: list[str]
    forward_model: nn.Module
    probe: GradientProbe
    optimizer: torch.optim.Optimizer
    scheduler: Any
    scaler: torch.amp.GradScaler | None
    acc: RunAccumulator
    batches: BatchCycle
    timer: StepTimer
    distributed: bool
    weighting: bool
    hook: RepresentationHook | None = None  # captures z in representation mode
    epoch: int = 0  # the loader pass the last scheduler step saw (interval: epoch)


@dataclass(frozen=True)
class _StepRecord:
    result: ProbeStep
    time_ms: float
    memory_mb: float
    lr: float
    skipped: bool


def train_run(
    prep: Prepared,
    method: Method,
    label: str,
    steps: int,
    every: int,
    writer: RunWriter | None = None,
    observer: Observer | None = None,
    tasks: Sequence[str] | None = None,
    stats: dict[str, TaskStats] | None = None,
    on_probe: Callable[[ProbeStep], None] | None = None,
    representation: str | None = None,
    trackers: Trackers | None = None,
) -> dict[str, Any]:
    """Train ``prep.model`` for ``steps`` optimizer steps with ``method``; return the run's
    summary entry.

    ``tasks`` trains a subset (single-task baselines). A NaN/Inf loss raises
    :class:`TrainingError` after recording the step; Ctrl-C propagates. In both cases the
    rows so far are on disk and ``acc`` (attached to the exception as ``.run_result``) holds
    the summary entry of the steps done. ``trackers`` get each row as it is written, the
    NaN step's too (:class:`~mtldiag.trackers.hub.TrackedWriter`; a worker's recorded rows
    reach them the same way when the parent replays them). ``representation``: the module
    whose output is the shared representation ``z`` (representation mode; its metrics have
    one layer).
    """
    observer = observer or NullObserver()
    if trackers:  # every row written, the NaN step's too, is also a tracker step
        writer = TrackedWriter(writer, trackers)  # type: ignore[assignment]
    loop = _start(
        prep, method, label, steps, every, list(tasks or prep.tasks), stats, representation
    )
    observer.run_started(label, prep.seed, steps)
    if loop.hook is not None:
        loop.hook.__enter__()
    try:
        for step in range(steps):
            try:
                rec = _train_step(loop, step, writer)
            except UserCodeError as exc:
                # The user's loader or forward broke mid-run: this run fails at this step, its
                # rows so far are kept and a comparison goes on with the next run.
                raise TrainingError(
                    f"{label} (seed {prep.seed}) at step {step}: {exc.message}", exc.hint
                ) from exc
            if on_probe is not None:
                on_probe(rec.result)
            _record(loop, step, rec, writer)
            observer.step_done(step, dict(zip(loop.tasks, rec.result.losses, strict=True)))
    except TrainingError as exc:
        loop.acc.fail("failed", exc.message)
        exc.run_result = _result(loop, method)  # type: ignore[attr-defined]
        observer.run_finished(exc.run_result)  # type: ignore[attr-defined]
        raise
    except KeyboardInterrupt as exc:
        loop.acc.fail("interrupted", "interrupted by the user (Ctrl-C)")
        exc.run_result = _result(loop, method)  # type: ignore[attr-defined]
        raise
    finally:
        if loop.hook is not None:
            loop.hook.__exit__(None, None, None)  # a forward hook must not outlive its run
    out = _result(loop, method)
    observer.run_finished(out)
    return out


def _start(
    prep: Prepared,
    method: Method,
    label: str,
    steps: int,
    every: int,
    run_tasks: list[str],
    stats: dict[str, TaskStats] | None,
    representation: str | None = None,
) -> _Loop:
    """Optimizer, scheduler, scaler, probe and accumulator of one run; the model in train mode."""
    spec, device = prep.spec, prep.device
    if stats is None:
        stats = label_stats(spec, prep.loader)
    dctx = distributed.context()
    forward_model = prep.model
    if dctx is not None:
        # Each rank saw its own shard: the methods must agree on one set of label statistics.
        stats = distributed.broadcast_object(stats)
        forward_model = distributed.wrap_ddp(prep.model, device, has_unused(prep, run_tasks))
    optimizer = build_optimizer(spec, prep.model)
    # fp16 gradients underflow without loss scaling; bf16 has fp32's range and needs none.
    scaler = torch.amp.GradScaler(device.type) if spec.precision == "fp16" else None
    probe = GradientProbe(
        prep.model,
        shared=prep.selection,
        every=every,
        method=method,
        context=run_context(prep, stats, steps, run_tasks),
        accumulate=spec.train.accumulate,
        scaler=scaler,
    )
    # Plain steps of a weighting method back-propagate through DDP (its all-reduce averages
    # every .grad); the other steps forward under no_sync and the probe averages J itself.
    probe.ddp_syncs_plain_steps = dctx is not None
    layers = [ALL_LAYERS, *metric_layers(representation, prep.selection.layout.layers)]
    loop = _Loop(
        prep=prep,
        label=label,
        tasks=run_tasks,
        forward_model=forward_model,
        probe=probe,
        optimizer=optimizer,
        scheduler=build_scheduler(spec, optimizer),
        scaler=scaler,
        acc=RunAccumulator(label, prep.seed, run_tasks, layers),
        batches=BatchCycle(prep.loader, prep.seed),
        timer=StepTimer(device),
        distributed=dctx is not None,
        weighting=isinstance(method, WeightingMethod),
        hook=RepresentationHook(prep.model, representation) if representation else None,
    )
    reset_peak_memory(device)
    prep.model.train()
    return loop


def _train_step(loop: _Loop, step: int, writer: RunWriter | None) -> _StepRecord:
    """One optimizer step: K micro-batches through the probe, then clip, step, schedule."""
    k = loop.prep.spec.train.accumulate
    batches = [next(loop.batches) for _ in range(k)]  # drawn first: step time excludes loading
    loop.timer.start()
    loop.optimizer.zero_grad(set_to_none=True)
    lr = float(loop.optimizer.param_groups[0]["lr"])
    for micro, batch in enumerate(batches):
        result = _micro_batch(loop, step, batch, last=micro == k - 1, writer=writer)
    assert result.complete
    skipped = _optimizer_step(loop)
    _schedule(loop)
    return _StepRecord(result, loop.timer.stop(), peak_memory_mb(loop.prep.device), lr, skipped)


def _micro_batch(
    loop: _Loop, step: int, batch: Any, last: bool, writer: RunWriter | None
) -> ProbeStep:
    """Forward one batch, stop on a non-finite loss, back-propagate it through the method."""
    prep, spec = loop.prep, loop.prep.spec
    # DDP all-reduces on a synced backward: only a weighting method's plain step, and only
    # its last micro-batch (the .grad of the others accumulate locally, as DDP intends).
    sync = loop.weighting and not loop.probe.instrumented(step) and last
    with distributed.forward_context(loop.forward_model, sync):
        losses = compute_losses(
            prep.loss_fn, loop.forward_model, batch, loop.tasks, prep.device, spec.precision
        )
    # One host transfer for all T losses (a sync per task would stall a GPU T times).
    given = [v for v in losses.values() if v is not None]  # None: no labels in this batch
    if not given:
        raise UserCodeError(
            f"step {step}: the batch has labels for none of the tasks (every loss is None).",
            hint="give every batch at least one task's labels",
        )
    values = torch.stack([v.detach().float().reshape(()) for v in given])
    if loop.distributed:
        # The losses of the global batch: what is logged, what the methods see, and a
        # NaN on any rank stops every rank at the same step.
        distributed.average_(values)
    present = iter(values.tolist())
    logged = [None if v is None else next(present) for v in losses.values()]
    _stop_on_bad_loss(loop, step, logged, writer)
    try:
        return loop.probe.backward(
            losses,
            global_losses=values if loop.distributed else None,
            features=loop.hook.output if loop.hook is not None else None,
        )
    except (MtldiagError, KeyboardInterrupt):
        raise
    except Exception as exc:
        # A method that breaks (a solver error, a bad state) fails its run alone: in a
        # comparison the other methods go on, as they do after a NaN.
        loop.acc.add(logged, loop.timer.stop(), peak_memory_mb(prep.device), None, None)
        raise TrainingError(
            f"{loop.label} (seed {prep.seed}): the method's backward raised "
            f"{type(exc).__name__} at step {step}: {exc}",
            hint="run with --debug for the traceback; try the method's other "
            "hyper-parameters or another method",
        ) from exc


def _stop_on_bad_loss(
    loop: _Loop, step: int, values: list[float | None], writer: RunWriter | None
) -> None:
    """Record the step and raise :class:`TrainingError` when a loss is NaN/Inf."""
    bad = [
        t for t, v in zip(loop.tasks, values, strict=True) if v is not None and not math.isfinite(v)
    ]
    if not bad:
        return
    prep = loop.prep
    ms = loop.timer.stop()
    mem = peak_memory_mb(prep.device)
    if writer is not None:
        # With trackers, ``writer`` is a TrackedWriter: this row is a tracker step too, with
        # its finite losses only (step_scalars drops NaN/Inf), as the same row replayed from a
        # worker is. Both streams show where the run stopped and what the other tasks did.
        writer.write_step(loop.label, prep.seed, step, ms, mem, values, None, None, loop.tasks)
    loop.acc.add(values, ms, mem, None, None)
    err = TrainingError(
        f"{loop.label} (seed {prep.seed}): loss of task '{bad[0]}' is "
        f"{values[loop.tasks.index(bad[0])]} at step {step}.",
        hint="lower the learning rate, check the data and the loss for that task; "
        "the records of the steps before it are kept",
    )
    err.everywhere = True  # the losses are the global batch's: every rank stops here
    raise err


def _optimizer_step(loop: _Loop) -> bool:
    """Clip the update the method wrote, step the optimizer; True if the scaler skipped it."""
    train = loop.prep.spec.train
    params = [p for g in loop.optimizer.param_groups for p in g["params"]]
    if loop.scaler is not None and (train.clip_grad_norm or train.clip_grad_value):
        loop.scaler.unscale_(loop.optimizer)  # clip the true update, not the scaled one
    if train.clip_grad_norm is not None:
        torch.nn.utils.clip_grad_norm_(params, train.clip_grad_norm)
    if train.clip_grad_value is not None:
        torch.nn.utils.clip_grad_value_(params, train.clip_grad_value)
    if loop.scaler is None:
        loop.optimizer.step()
        return False
    before = loop.scaler.get_scale()
    loop.scaler.step(loop.optimizer)  # skips the step on inf/NaN gradients
    loop.scaler.update()
    return loop.scaler.get_scale() < before  # the scale backs off exactly when it skipped


def _schedule(loop: _Loop) -> None:
    """Step the LR scheduler after each optimizer step, or when a loader pass ends."""
    sched, sspec = loop.scheduler, loop.prep.spec.scheduler
    if sched is None or sspec is None:
        return
    if sspec.interval == "step":
        sched.step()
    else:
        while loop.epoch < loop.batches.passes_done():  # a pass ended with this step
            loop.epoch += 1
            sched.step()


def _record(loop: _Loop, step: int, rec: _StepRecord, writer: RunWriter | None) -> None:
    r = rec.result
    if rec.skipped:
        loop.acc.extra["skipped_steps"] = loop.acc.extra.get("skipped_steps", 0) + 1
    if writer is not None:
        writer.write_step(
            loop.label,
            loop.prep.seed,
            step,
            rec.time_ms,
            rec.memory_mb,
            r.losses,
            r.weights,
            r.metrics,
            loop.tasks,
            lr=rec.lr,
        )
    loop.acc.add(r.losses, rec.time_ms, rec.memory_mb, r.weights, r.metrics)


def _result(loop: _Loop, method: Method) -> dict[str, Any]:
    out = loop.acc.result()
    # Each run says its space: one comparison may hold both (mgda beside mgda@representation).
    out["jacobian"] = space_of(loop.hook is not None)
    if loop.scaler is not None:
        out.setdefault("skipped_steps", 0)
    if method.warnings:  # e.g. Nash-MTL steps whose solve failed and kept the last weights
        out["warnings"] = list(method.warnings)
    return out
