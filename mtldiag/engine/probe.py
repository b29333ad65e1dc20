"""GradientProbe: the instrument, usable inside any training loop.

    probe = GradientProbe(model, every=10)          # shared parameters found on first call
    for batch in loader:
        losses = {"seg": ..., "depth": ...}
        optimizer.zero_grad()
        step = probe.backward(losses)               # fills .grad (method, default EW)
        optimizer.step()
        if step.metrics:                            # an instrumented step
            print(step.metrics.cosine[0])           # pairwise cosines, whole shared trunk

On an instrumented step the probe computes the per-task gradients over the shared parameters
with one ``autograd.grad`` per task and derives the Gramians and the update from them, so the
diagnosis costs no backward pass beyond those T (and, outside torchrun and GradDrop-like
methods, no T x P Jacobian copy either). Other steps cost one backward (weighting
methods) or T (gradient methods, which always need the Jacobian).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from mtldiag.engine import distributed
from mtldiag.engine.gramian import StepMetrics, step_metrics
from mtldiag.engine.jacobian import JacobianEngine
from mtldiag.engine.linear_norms import LinearCapture
from mtldiag.engine.micro import MicroBatches
from mtldiag.engine.missing import carried_losses, expand, expand_metrics, present_method
from mtldiag.engine.shared import SharedSelection, select_shared
from mtldiag.engine.step import backward_step, detached_losses, norm_capture, scale_losses
from mtldiag.errors import TrainingError
from mtldiag.methods._scalar import EqualWeights
from mtldiag.methods.base import Method, RunContext
from mtldiag.trackers.base import ConflictCounter, step_scalars


@dataclass(frozen=True)
class ProbeStep:
    """What one :meth:`GradientProbe.backward` did."""

    step: int
    instrumented: bool
    losses: list[float | None]  # None: the task had no labels in the batch
    weights: list[float | None] | None
    metrics: StepMetrics | None
    gramian: torch.Tensor | None  # (T, T) float64 of the whole shared set, when computed
    complete: bool = True  # False: a micro-batch was added; do not step the optimizer yet
    finite: bool = True  # False: inf/NaN gradients under a GradScaler; its step() skips


class GradientProbe:
    """Per-task gradient instrument for a multi-task model.

    ``shared``: ``"auto"`` (parameters reached by two or more tasks on the first call), glob
    patterns over parameter names, or a ready :class:`~mtldiag.engine.shared.SharedSelection`.
    ``every``: instrument every K-th call (0 never). ``method``: a balancing method from
    :mod:`mtldiag.methods` (default: equal weights); the probe calls its ``reset`` on the
    first call with the task names it sees.

    ``accumulate``: K micro-batches per optimizer step. Call :meth:`backward` once per
    micro-batch (with its mean losses) and step the optimizer when the returned step is
    ``complete``: the per-task gradients, metrics and the method's input are those of the
    K micro-batches together; ``.grad`` holds the update after the K-th call only.
    ``scaler``: a ``torch.amp.GradScaler`` (fp16). The probe scales the losses itself, unscales
    the per-task gradients before metrics and method, and leaves a scaled ``.grad``: then call
    ``scaler.step(optimizer)`` and ``scaler.update()`` as usual (``scaler.unscale_(optimizer)``
    first to clip). Clipping is left to the loop.
    """

    def __init__(
        self,
        model: nn.Module,
        shared: str | Sequence[str] | SharedSelection = "auto",
        every: int = 1,
        method: Method | None = None,
        seed: int = 0,
        context: RunContext | None = None,
        *,
        accumulate: int = 1,
        scaler: torch.amp.GradScaler | None = None,
    ) -> None:
        if every < 0:
            raise ValueError(f"Parameter `every` should be >= 0. Found `every = {every}`.")
        self.micro = MicroBatches(accumulate) if accumulate != 1 else None
        self.scaler = scaler
        self._last_losses: torch.Tensor | None = None  # carried for a task without labels
        self.model = model
        self.shared = shared
        self.every = every
        self.method: Method = method if method is not None else EqualWeights()
        self.seed = seed
        self.context = context
        self.tasks: list[str] | None = None
        self.selection: SharedSelection | None = None
        self.engine: JacobianEngine | None = None
        self.step_index = 0
        # Under torchrun: whether DDP already averages the .grad of a plain backward (the
        # trainer wraps the model); a user loop without DDP leaves it False and the probe does.
        self.ddp_syncs_plain_steps = False
        # GradNorm-like methods on a last shared nn.Linear: its input and output each forward,
        # so that a plain step takes the norms in closed form (mtldiag.engine.linear_norms).
        self.capture: LinearCapture | None = None

    def __enter__(self) -> GradientProbe:
        return self

    def __exit__(self, *exc: object) -> None:
        # Remove the norms' forward hook; drop the Jacobian buffer so its memory is returned.
        if self.capture is not None:
            self.capture.remove()
            self.capture = None
        if self.engine is not None:
            self.engine._buffer = None

    def _setup(self, losses: Mapping[str, torch.Tensor | None]) -> None:
        self.tasks = list(losses)
        given = {t: v for t, v in losses.items() if v is not None}
        if isinstance(self.shared, SharedSelection):
            self.selection = self.shared
        else:
            self.selection = select_shared(self.model, given, self.shared)
        self.engine = JacobianEngine(self.selection.layout, self.selection.others)
        first = next(iter(given.values()))
        ctx = self.context or RunContext(
            tasks=tuple(self.tasks),
            seed=self.seed,
            device=first.device,
            layer_sizes=tuple(self.selection.layout.layer_sizes),
            dtype=self.selection.layout.params[0].dtype,
        )
        self.method.reset(ctx)
        # The closed-form GradNorm norms' hook, where they are exact (the step core's rule).
        self.capture = norm_capture(
            self.method, self.model, self.selection.layout, self.selection.others
        )

    def instrumented(self, step: int) -> bool:
        return self.every > 0 and step % self.every == 0

    def backward(
        self,
        losses: Mapping[str, torch.Tensor | None],
        global_losses: torch.Tensor | None = None,
        features: torch.Tensor | None = None,
    ) -> ProbeStep:
        """Back-propagate the task losses through the method; fill every ``.grad``.

        A loss of ``None``: the task has no labels in this batch and is left out of the step
        (:mod:`mtldiag.engine.missing`); its entries in the result are ``None``.

        Under torchrun (a process group mtldiag started) the per-task gradients are averaged
        across ranks before anything is derived from them, so metrics and update are those of
        the global batch and the same on every rank. ``global_losses``: the losses already
        averaged across ranks, in task order (else the probe averages them). ``features``: the
        shared representation ``z`` of this forward: per-task gradients, Gramians and metrics are
        then taken w.r.t. ``z`` (representation mode, see :mod:`mtldiag.engine.representation`).
        """
        if self.engine is None:
            self._setup(losses)
        assert self.engine is not None and self.tasks is not None
        step = self.step_index
        ordered_all = [losses[t] for t in self.tasks]
        present = [i for i, v in enumerate(ordered_all) if v is not None]
        partial = len(present) < len(ordered_all)
        if partial and (self.micro is not None or distributed.context() is not None):
            raise TrainingError(
                "a task without labels in a batch (loss None) is supported without "
                "accumulation and outside torchrun only.",
                hint="drop accumulate:, or give every batch labels for every task",
            )
        ordered = [ordered_all[i] for i in present]  # type: ignore[misc]
        detached = detached_losses(ordered)
        if distributed.context() is not None:
            detached = (
                global_losses if global_losses is not None else distributed.average_(detached)
            )
        method = self.method
        if partial:
            detached = carried_losses(present, detached, self._last_losses, len(ordered_all))
            method = present_method(self.method, present, detached, self.tasks)
        self._last_losses = detached
        inst = self.instrumented(step)
        ordered, loss_scale = scale_losses(self.scaler, ordered)
        result = backward_step(
            self.engine,
            method,
            ordered,
            detached[present] if partial else detached,
            step,
            per_task=inst,
            ddp_syncs_plain_steps=self.ddp_syncs_plain_steps,
            loss_scale=loss_scale,
            micro=self.micro,
            features=features,
            capture=self.capture,
        )
        if not result.complete:
            return ProbeStep(step, inst, detached.tolist(), None, None, None, complete=False)
        self.step_index += 1
        stack = result.gramians if result.finite else None
        weights = result.weights
        assert result.losses is not None
        layout = result.layout or self.engine.layout  # representation mode: the columns of z
        metrics = step_metrics(stack, layout) if inst and stack is not None else None
        w_list = None if weights is None else weights.detach().float().cpu().tolist()
        losses_list = result.losses.tolist()
        if partial:
            n = len(ordered_all)
            losses_list = expand(losses_list, present, n)
            w_list = expand(w_list, present, n)
            metrics = None if metrics is None else expand_metrics(metrics, present, n)
            stack = None  # a T' x T' Gramian: the preview reads all T tasks
        return ProbeStep(
            step=step,
            instrumented=inst,
            losses=losses_list,
            weights=w_list,
            metrics=metrics,
            gramian=None if stack is None else stack[0],
            finite=result.finite,
        )

    def scalars(self, step: ProbeStep) -> dict[str, float]:
        """``step`` (what :meth:`backward` returned) as one flat ``{key: number}`` dict for any
        logger, in the trackers' key scheme (``loss/<task>``, ``cosine/<a>-vs-<b>``, running
        ``conflict_rate/...``; :mod:`mtldiag.trackers.base`): ``wandb.log(probe.scalars(step))``.

        The running conflict rate counts the instrumented steps passed here.
        """
        # The counter lives on first use so that this method stays one self-contained addition.
        counter = self.__dict__.setdefault("_scalar_conflicts", ConflictCounter())
        return step_scalars(step, self.tasks or [], counter)
