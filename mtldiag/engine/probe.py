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
from mtldiag.engine.gramian import (
    StepMetrics,
    stacked_gramians,
    stacked_gramians_from_grads,
    step_metrics,
)
from mtldiag.engine.jacobian import JacobianEngine
from mtldiag.engine.shared import SharedSelection, select_shared
from mtldiag.methods.base import GramianMethod, Method, RunContext, WeightingMethod
from mtldiag.trackers.base import ConflictCounter, step_scalars


@dataclass(frozen=True)
class ProbeStep:
    """What one :meth:`GradientProbe.backward` did."""

    step: int
    instrumented: bool
    losses: list[float]
    weights: list[float] | None
    metrics: StepMetrics | None
    gramian: torch.Tensor | None  # (T, T) float64 of the whole shared set, when computed


class _EqualWeights(WeightingMethod):
    name = "ew"

    def weights(self, losses: torch.Tensor, step: int) -> torch.Tensor:
        return torch.ones_like(losses)


class GradientProbe:
    """Per-task gradient instrument for a multi-task model.

    ``shared``: ``"auto"`` (parameters reached by two or more tasks on the first call), glob
    patterns over parameter names, or a ready :class:`~mtldiag.engine.shared.SharedSelection`.
    ``every``: instrument every K-th call (0 never). ``method``: a balancing method from
    :mod:`mtldiag.methods` (default: equal weights); the probe calls its ``reset`` on the
    first call with the task names it sees.
    """

    def __init__(
        self,
        model: nn.Module,
        shared: str | Sequence[str] | SharedSelection = "auto",
        every: int = 1,
        method: Method | None = None,
        seed: int = 0,
        context: RunContext | None = None,
    ) -> None:
        if every < 0:
            raise ValueError(f"Parameter `every` should be >= 0. Found `every = {every}`.")
        self.model = model
        self.shared = shared
        self.every = every
        self.method: Method = method if method is not None else _EqualWeights()
        self.seed = seed
        self.context = context
        self.tasks: list[str] | None = None
        self.selection: SharedSelection | None = None
        self.engine: JacobianEngine | None = None
        self.step_index = 0
        # Under torchrun: whether DDP already averages the .grad of a plain backward (the
        # trainer wraps the model); a user loop without DDP leaves it False and the probe does.
        self.ddp_syncs_plain_steps = False

    def __enter__(self) -> GradientProbe:
        return self

    def __exit__(self, *exc: object) -> None:
        # No hooks to remove; drop the Jacobian buffer so its memory is returned.
        if self.engine is not None:
            self.engine._buffer = None

    def _setup(self, losses: Mapping[str, torch.Tensor]) -> None:
        self.tasks = list(losses)
        if isinstance(self.shared, SharedSelection):
            self.selection = self.shared
        else:
            self.selection = select_shared(self.model, losses, self.shared)
        self.engine = JacobianEngine(self.selection.layout, self.selection.others)
        first = next(iter(losses.values()))
        ctx = self.context or RunContext(
            tasks=tuple(self.tasks),
            seed=self.seed,
            device=first.device,
            layer_sizes=tuple(self.selection.layout.layer_sizes),
        )
        self.method.reset(ctx)

    def instrumented(self, step: int) -> bool:
        return self.every > 0 and step % self.every == 0

    def backward(
        self, losses: Mapping[str, torch.Tensor], global_losses: torch.Tensor | None = None
    ) -> ProbeStep:
        """Back-propagate the task losses through the method; fill every ``.grad``.

        Under torchrun (a process group mtldiag started) the per-task gradients are averaged
        across ranks before anything is derived from them, so metrics and update are those of
        the global batch and the same on every rank. ``global_losses``: the losses already
        averaged across ranks, in task order (else the probe averages them).
        """
        if self.engine is None:
            self._setup(losses)
        assert self.engine is not None and self.tasks is not None
        step = self.step_index
        self.step_index += 1
        ordered = [losses[t] for t in self.tasks]
        detached = torch.stack([loss.detach().float().reshape(()) for loss in ordered])
        dctx = distributed.context()
        if dctx is not None:
            detached = (
                global_losses if global_losses is not None else distributed.average_(detached)
            )
        method = self.method
        weighting = isinstance(method, WeightingMethod)
        inst = self.instrumented(step)

        weights: torch.Tensor | None = method.weights(detached, step) if weighting else None
        grad_norms: torch.Tensor | None = None
        metrics: StepMetrics | None = None
        gram: torch.Tensor | None = None
        layout = self.engine.layout
        if (
            (inst or not weighting)
            and dctx is None
            and (weighting or isinstance(method, GramianMethod))
        ):
            # No J needed: Gramians from the T gradient lists, the update summed in place
            # into them (no T x P copy, the cost of a plain multi-pass update).
            grads = self.engine.task_grads(ordered, head_weights=weights)
            stack = stacked_gramians_from_grads(grads, layout)  # (L+1, T, T)
            gram = stack[0]
            if weighting:
                assert weights is not None
                if method.needs_grad_norms:
                    where = stack[0] if method.grad_norm_layer == "all" else stack[-1]
                    grad_norms = torch.diagonal(where).clamp_min(0).sqrt().float()
            else:
                weights = method.weights_from_gramian(gram, detached)  # type: ignore[attr-defined]
            assert weights is not None
            self.engine.combine_into_grads(grads, weights)
            if inst:
                metrics = step_metrics(stack, layout)
        elif inst or not weighting:
            jac = self.engine.compute(ordered, head_weights=weights)
            if dctx is not None:
                distributed.average_(jac)  # T x P floats: the one large collective
                distributed.average_grads(self.engine.others)
            stack = stacked_gramians(jac, layout)  # (L+1, T, T)
            gram = stack[0]
            if weighting:
                assert weights is not None
                direction = weights.to(jac) @ jac
                if method.needs_grad_norms:
                    where = stack[0] if method.grad_norm_layer == "all" else stack[-1]
                    grad_norms = torch.diagonal(where).clamp_min(0).sqrt().float()
            elif isinstance(method, GramianMethod):
                weights = method.weights_from_gramian(gram, detached)
                direction = weights.to(jac) @ jac
            else:
                direction = method.aggregate(jac, detached)  # type: ignore[attr-defined]
            self.engine.write_direction(direction)
            if inst:
                metrics = step_metrics(stack, layout)
        else:
            assert weights is not None
            if method.needs_grad_norms:
                grad_norms = self._last_layer_norms(ordered, method.grad_norm_layer == "all")
            total = (weights.to(ordered[0].dtype) * torch.stack(ordered).reshape(-1)).sum()
            total.backward()
            if dctx is not None and not self.ddp_syncs_plain_steps:
                distributed.average_grads([*layout.params, *self.engine.others])
        if weighting:
            method.update(detached, step, grad_norms)
        return ProbeStep(
            step=step,
            instrumented=inst,
            losses=detached.tolist(),
            weights=None if weights is None else weights.detach().float().cpu().tolist(),
            metrics=metrics,
            gramian=gram,
        )

    def _last_layer_norms(
        self, ordered: list[torch.Tensor], every_layer: bool = False
    ) -> torch.Tensor:
        """Each task's gradient norm on the last shared layer (GradNorm's W), or on all."""
        assert self.engine is not None
        layout = self.engine.layout
        last = list(layout.layer_slices.values())[-1]
        params = (
            list(layout.params)
            if every_layer
            else [
                p
                for k, p in enumerate(layout.params)
                if layout.offsets[k] >= last.start and layout.offsets[k + 1] <= last.stop
            ]
        )
        if distributed.context() is not None:
            return self._global_norms(ordered, params)
        out = []
        for loss in ordered:
            grads = torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True)
            sq = sum(float((g.float() ** 2).sum()) for g in grads if g is not None)
            out.append(sq**0.5)
        return torch.tensor(out)

    @staticmethod
    def _global_norms(ordered: list[torch.Tensor], params: list[torch.Tensor]) -> torch.Tensor:
        """Norms of the rank-averaged gradients (a mean of per-rank norms would be larger)."""
        rows = []
        for loss in ordered:
            grads = torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True)
            rows.append(
                torch.cat(
                    [
                        (torch.zeros_like(p) if g is None else g).reshape(-1).float()
                        for p, g in zip(params, grads, strict=True)
                    ]
                )
            )
        block = distributed.average_(torch.stack(rows))
        return block.double().pow(2).sum(dim=1).sqrt().float().cpu()

    def scalars(self, step: ProbeStep) -> dict[str, float]:
        """``step`` (what :meth:`backward` returned) as one flat ``{key: number}`` dict for any
        logger, in the trackers' key scheme (``loss/<task>``, ``cosine/<a>-vs-<b>``, running
        ``conflict_rate/...``; :mod:`mtldiag.trackers.base`): ``wandb.log(probe.scalars(step))``.

        The running conflict rate counts the instrumented steps passed here.
        """
        # The counter lives on first use so that this method stays one self-contained addition.
        counter = self.__dict__.setdefault("_scalar_conflicts", ConflictCounter())
        return step_scalars(step, self.tasks or [], counter)
