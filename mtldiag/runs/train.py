"""The training loop of ``profile`` and ``compare``: seed, batches, method, probe, records."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch import nn

from mtldiag.engine import distributed
from mtldiag.engine.device import StepTimer, autocast, peak_memory_mb, reset_peak_memory
from mtldiag.engine.gramian import ALL_LAYERS
from mtldiag.engine.jacobian import build_layout
from mtldiag.engine.probe import GradientProbe, ProbeStep
from mtldiag.engine.shared import SharedSelection, select_shared
from mtldiag.errors import MtldiagError, TrainingError, UserCodeError
from mtldiag.methods.base import Method, RunContext, TaskStats, WeightingMethod
from mtldiag.rundir.accumulate import RunAccumulator
from mtldiag.rundir.writer import RunWriter
from mtldiag.runs.build import BatchCycle, build_loader, build_model, build_optimizer, move_to
from mtldiag.runs.losses import LossFn, build_loss_fn, check_losses, label_stats
from mtldiag.runs.usercode import user_code_error
from mtldiag.spec import Spec
from mtldiag.trackers.hub import Trackers


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
class Prepared:
    """A model and loader built under one seed, with the shared parameters found."""

    spec: Spec
    seed: int
    device: torch.device
    model: nn.Module
    loader: Any
    loss_fn: LossFn
    tasks: list[str]
    selection: SharedSelection
    first_losses: dict[str, float]


def compute_losses(
    loss_fn: LossFn,
    model: nn.Module,
    batch: Any,
    tasks: Sequence[str] | None,
    device: torch.device,
    precision: str,
) -> dict[str, torch.Tensor]:
    batch = move_to(batch, device)
    try:
        with autocast(device, precision):
            raw = loss_fn(model, batch)
    except MtldiagError:
        raise
    except Exception as exc:  # the user's forward or losses function broke on this batch
        raise user_code_error("the model's forward or a task's loss", exc) from exc
    losses = check_losses(raw, tasks)
    return {t: losses[t] for t in tasks} if tasks else losses


def prepare(
    spec: Spec,
    seed: int,
    device: torch.device,
    shared: SharedSelection | None = None,
    loader_kwargs: dict[str, Any] | None = None,
) -> Prepared:
    """Build model and loader under ``seed`` and find the shared parameters on one batch.

    ``shared`` reuses a selection by parameter *names* (for single-task baselines, which have
    only one loss to detect sharing with).
    """
    model = build_model(spec, seed, device)
    loader = build_loader(spec, seed, **(loader_kwargs or {}))
    loss_fn = build_loss_fn(spec)
    batch = next(BatchCycle(loader, seed))
    losses = compute_losses(loss_fn, model, batch, spec.task_names or None, device, spec.precision)
    if shared is None:
        selection = select_shared(model, losses, spec.shared)
    else:
        selection = _same_names(model, shared)
    first = {t: float(v.detach()) for t, v in losses.items()}
    del losses
    model.zero_grad(set_to_none=True)
    return Prepared(spec, seed, device, model, loader, loss_fn, list(first), selection, first)


def _same_names(model: nn.Module, ref: SharedSelection) -> SharedSelection:
    params = dict(model.named_parameters())
    chosen = [(n, params[n]) for n in ref.layout.names]
    names = set(ref.layout.names)
    others = [(n, p) for n, p in params.items() if n not in names and p.requires_grad]
    return SharedSelection(
        build_layout(chosen),
        tuple(p for _, p in others),
        tuple(n for n, _ in others),
        ref.reached_by,
    )


def run_context(
    prep: Prepared, stats: dict[str, TaskStats], steps: int, tasks: Sequence[str] | None = None
) -> RunContext:
    return RunContext(
        tasks=tuple(tasks or prep.tasks),
        seed=prep.seed,
        total_steps=steps,
        device=prep.device,
        task_stats=stats,
        layer_sizes=tuple(prep.selection.layout.layer_sizes),
    )


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
    trackers: Trackers | None = None,
) -> dict[str, Any]:
    """Train ``prep.model`` for ``steps`` steps with ``method``; return the run's summary entry.

    ``tasks`` trains a subset (single-task baselines). A NaN/Inf loss raises
    :class:`TrainingError` after recording the step; Ctrl-C propagates. ``trackers`` get
    every step next to the run directory's row. In both cases the
    rows so far are on disk and ``acc`` (attached to the exception as ``.run_result``) holds
    the summary entry of the steps done.
    """
    observer = observer or NullObserver()
    spec, device = prep.spec, prep.device
    run_tasks = list(tasks or prep.tasks)
    if stats is None:
        stats = label_stats(spec, prep.loader)
    dctx = distributed.context()
    forward_model = prep.model
    if dctx is not None:
        # Each rank saw its own shard: the methods must agree on one set of label statistics.
        stats = distributed.broadcast_object(stats)
        forward_model = distributed.wrap_ddp(prep.model, device, _has_unused(prep, run_tasks))
    params = [p for p in prep.model.parameters() if p.requires_grad]
    optimizer = build_optimizer(spec, params)
    probe = GradientProbe(
        prep.model,
        shared=prep.selection,
        every=every,
        method=method,
        context=run_context(prep, stats, steps, run_tasks),
    )
    # Plain steps of a weighting method back-propagate through DDP (its all-reduce averages
    # every .grad); the other steps forward under no_sync and the probe averages J itself.
    probe.ddp_syncs_plain_steps = dctx is not None
    weighting = isinstance(method, WeightingMethod)
    acc = RunAccumulator(label, prep.seed, run_tasks, [ALL_LAYERS, *prep.selection.layout.layers])
    batches = BatchCycle(prep.loader, prep.seed)
    timer = StepTimer(device)
    reset_peak_memory(device)
    prep.model.train()
    observer.run_started(label, prep.seed, steps)
    try:
        for step in range(steps):
            try:
                batch = next(batches)
                timer.start()
                sync = weighting and not probe.instrumented(step)
                with distributed.forward_context(forward_model, sync):
                    losses = compute_losses(
                        prep.loss_fn, forward_model, batch, run_tasks, device, spec.precision
                    )
            except UserCodeError as exc:
                # The user's loader or forward broke mid-run: this run fails at this step, its
                # rows so far are kept and a comparison goes on with the next run.
                raise TrainingError(
                    f"{label} (seed {prep.seed}) at step {step}: {exc.message}", exc.hint
                ) from exc
            optimizer.zero_grad(set_to_none=True)
            # One host transfer for all T losses (a sync per task would stall a GPU T times).
            values = torch.stack([v.detach().float().reshape(()) for v in losses.values()])
            if dctx is not None:
                # The losses of the global batch: what is logged, what the methods see, and a
                # NaN on any rank stops every rank at the same step.
                distributed.average_(values)
            values_list = values.tolist()
            bad = [t for t, v in zip(losses, values_list, strict=True) if not math.isfinite(v)]
            if bad:
                values = values_list
                ms = timer.stop()
                if writer is not None:
                    writer.write_step(
                        label,
                        prep.seed,
                        step,
                        ms,
                        peak_memory_mb(device),
                        values,
                        None,
                        None,
                        run_tasks,
                    )
                acc.add(values, ms, peak_memory_mb(device), None, None)
                raise TrainingError(
                    f"{label} (seed {prep.seed}): loss of task '{bad[0]}' is "
                    f"{values_list[run_tasks.index(bad[0])]} at step {step}.",
                    hint="lower the learning rate, check the data and the loss for that task; "
                    "the records of the steps before it are kept",
                )
            try:
                result = probe.backward(losses, global_losses=values if dctx is not None else None)
            except (MtldiagError, KeyboardInterrupt):
                raise
            except Exception as exc:
                # A method that breaks (a solver error, a bad state) fails its run alone: in a
                # comparison the other methods go on, as they do after a NaN.
                ms = timer.stop()
                acc.add(values_list, ms, peak_memory_mb(device), None, None)
                raise TrainingError(
                    f"{label} (seed {prep.seed}): the method's backward raised "
                    f"{type(exc).__name__} at step {step}: {exc}",
                    hint="run with --debug for the traceback; try the method's other "
                    "hyper-parameters or another method",
                ) from exc
            optimizer.step()
            ms = timer.stop()
            mem = peak_memory_mb(device)
            if on_probe is not None:
                on_probe(result)
            if writer is not None:
                writer.write_step(
                    label,
                    prep.seed,
                    step,
                    ms,
                    mem,
                    result.losses,
                    result.weights,
                    result.metrics,
                    run_tasks,
                )
            if trackers:
                trackers.log_step(result, ms, optimizer.param_groups[0].get("lr"))
            acc.add(result.losses, ms, mem, result.weights, result.metrics)
            observer.step_done(step, dict(zip(run_tasks, result.losses, strict=True)))
    except TrainingError as exc:
        acc.fail("failed", exc.message)
        exc.run_result = acc.result()  # type: ignore[attr-defined]
        observer.run_finished(exc.run_result)  # type: ignore[attr-defined]
        raise
    except KeyboardInterrupt as exc:
        acc.fail("interrupted", "interrupted by the user (Ctrl-C)")
        exc.run_result = acc.result()  # type: ignore[attr-defined]
        raise
    out = acc.result()
    if method.warnings:  # e.g. Nash-MTL steps whose solve failed and kept the last weights
        out["warnings"] = list(method.warnings)
    observer.run_finished(out)
    return out


def _has_unused(prep: Prepared, tasks: Sequence[str]) -> bool:
    """Whether some trainable parameter is reached by none of ``tasks`` (DDP must be told)."""
    wanted = set(tasks)
    reached = prep.selection.reached_by
    return any(
        p.requires_grad and not wanted & set(reached.get(n, ()))
        for n, p in prep.model.named_parameters()
    )
