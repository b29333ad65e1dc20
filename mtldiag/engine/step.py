"""The one step core: a method's backward over the T task losses, whoever runs the loop.

:class:`~mtldiag.engine.probe.GradientProbe` (the instrument), :class:`~mtldiag.engine.balancer.
Balancer` (a method in a user's loop) and so the trainer all call :func:`backward_step`. It
chooses, per method family and step, the cheapest pass that gives what the step needs:

* **per-task gradient lists** (``JacobianEngine.task_grads``) when the step needs per-task
  gradients (an instrumented step, or a Gramian method) and no ``J`` is required: Gramians by
  dot products, the update summed in place into the lists — no T x P copy;
* **the Jacobian** ``J`` (T x P) for methods whose ``aggregate`` reads it (GradDrop-like) and
  under torchrun, which averages ``J`` across ranks in one collective;
* **one backward** of ``sum_i w_i L_i`` for a weighting method's plain step (plus, for
  GradNorm-like methods, one partial ``autograd.grad`` per task on the layer it normalises).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from mtldiag.engine import distributed
from mtldiag.engine.gramian import stacked_gramians, stacked_gramians_from_grads
from mtldiag.engine.jacobian import JacobianEngine, SharedLayout
from mtldiag.engine.representation import RepresentationEngine
from mtldiag.methods.base import GramianMethod, Method, MethodError, WeightingMethod


@dataclass(frozen=True)
class StepResult:
    """What one backward step computed besides the ``.grad`` it filled."""

    weights: torch.Tensor | None  # (T,) the method's weights; None for GradDrop-like methods
    gramians: torch.Tensor | None  # (L+1, T, T): whole shared set, then each layer; if taken
    grad_norms: torch.Tensor | None  # (T,) what a GradNorm-like method was given
    layout: SharedLayout | None = None  # the columns the Gramians are of, if not the engine's


def detached_losses(ordered: Sequence[torch.Tensor]) -> torch.Tensor:
    """The T losses as one detached vector: float32, or float64 when a loss is float64.

    Half-precision losses are promoted (a method's arithmetic on fp16 values would round), a
    float64 model keeps its precision.
    """
    dtype = torch.float64 if any(v.dtype == torch.float64 for v in ordered) else torch.float32
    return torch.stack([v.detach().to(dtype).reshape(()) for v in ordered])


def grad_norm_params(layout: SharedLayout, where: str) -> list[torch.Tensor]:
    """The parameters a method's gradient norms are taken on: ``"all"`` shared ones, or the
    last shared layer (GradNorm's ``W``, the default)."""
    if where == "all":
        return list(layout.params)
    last = list(layout.layer_slices.values())[-1]
    return [
        p
        for k, p in enumerate(layout.params)
        if layout.offsets[k] >= last.start and layout.offsets[k + 1] <= last.stop
    ]


def _norms_from_gramians(stack: torch.Tensor, where: str) -> torch.Tensor:
    """Gradient norms read off the Gramians already taken (no extra pass)."""
    gram = stack[0] if where == "all" else stack[-1]
    return torch.diagonal(gram).clamp_min(0).sqrt().float()


def _partial_norms(ordered: Sequence[torch.Tensor], params: list[torch.Tensor]) -> torch.Tensor:
    """Each task's gradient norm on ``params`` by one partial ``autograd.grad`` per task."""
    if distributed.context() is not None:
        return _global_norms(ordered, params)
    out = []
    for loss in ordered:
        grads = torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True)
        sq = sum(float((g.float() ** 2).sum()) for g in grads if g is not None)
        out.append(sq**0.5)
    return torch.tensor(out)


def _global_norms(ordered: Sequence[torch.Tensor], params: list[torch.Tensor]) -> torch.Tensor:
    """Norms of the rank-averaged gradients (a mean of per-rank norms would be larger)."""
    rows = []
    for loss in ordered:
        grads = torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True)
        flat = [
            (torch.zeros_like(p) if g is None else g).reshape(-1).float()
            for p, g in zip(params, grads, strict=True)
        ]
        rows.append(torch.cat(flat))
    block = distributed.average_(torch.stack(rows))
    return block.double().pow(2).sum(dim=1).sqrt().float().cpu()


def own_storage(direction: torch.Tensor, jacobian: torch.Tensor) -> torch.Tensor:
    """``direction``, copied if it is a view of ``J``'s buffer.

    The engine reuses that buffer next step; a ``.grad`` that viewed it would silently change
    when the next ``J`` is written (a method may return a row of ``J`` or ``J`` reshaped).
    """
    if direction.untyped_storage().data_ptr() == jacobian.untyped_storage().data_ptr():
        return direction.clone()
    return direction


def backward_step(
    engine: JacobianEngine,
    method: Method,
    ordered: Sequence[torch.Tensor],
    losses: torch.Tensor,
    step: int,
    *,
    per_task: bool,
    ddp_syncs_plain_steps: bool = False,
    features: torch.Tensor | None = None,
) -> StepResult:
    """Back-propagate the T task losses ``ordered`` through ``method``; fill every ``.grad``.

    ``losses``: the detached losses the method sees (already averaged across ranks under
    torchrun). ``per_task``: take the per-task gradients even for a weighting method (an
    instrumented step); a gradient method always takes them. ``ddp_syncs_plain_steps``: DDP
    already averages a plain backward's ``.grad`` (the trainer wraps the model), so a weighting
    method's plain step needs no average of its own. ``features``: the shared representation
    ``z``: representation mode (:mod:`mtldiag.engine.representation`), where the per-task
    gradients are taken w.r.t. ``z`` and the direction ``dz`` back-propagated once through the
    trunk; the family dispatch below is the same, on a :class:`RepresentationEngine`.
    """
    weighting = isinstance(method, WeightingMethod)
    weights = method.weights(losses, step) if weighting else None
    dist = distributed.context() is not None
    rep = None
    if features is not None and (per_task or not weighting):
        if dist:
            raise MethodError("representation gradients are not supported under torchrun.")
        rep = RepresentationEngine(features, engine.others)
    norms: torch.Tensor | None = None
    stack: torch.Tensor | None = None
    if not per_task and weighting:
        assert weights is not None
        if method.needs_grad_norms:
            norms = _partial_norms(ordered, grad_norm_params(engine.layout, method.grad_norm_layer))
        total = (weights.to(ordered[0].dtype) * torch.stack(list(ordered)).reshape(-1)).sum()
        total.backward()
        if dist and not ddp_syncs_plain_steps:
            distributed.average_grads([*engine.layout.params, *engine.others])
    elif rep is None and not dist and (weighting or isinstance(method, GramianMethod)):
        grads = engine.task_grads(list(ordered), head_weights=weights)
        stack = stacked_gramians_from_grads(grads, engine.layout)  # (L+1, T, T)
        if weighting and method.needs_grad_norms:
            norms = _norms_from_gramians(stack, method.grad_norm_layer)
        if not weighting:
            weights = method.weights_from_gramian(stack[0], losses)  # type: ignore[attr-defined]
        assert weights is not None
        engine.combine_into_grads(grads, weights)
    else:
        used = engine if rep is None else rep
        jac = used.compute(list(ordered), head_weights=weights)
        if dist:
            distributed.average_(jac)  # T x P floats: the one large collective
            distributed.average_grads(engine.others)
        stack = stacked_gramians(jac, used.layout)  # (L+1, T, T)
        if weighting and method.needs_grad_norms:
            norms = _norms_from_gramians(stack, method.grad_norm_layer)
        if isinstance(method, GramianMethod):
            weights = method.weights_from_gramian(stack[0], losses)
        if weights is not None:
            direction = weights.to(jac) @ jac
        else:
            direction = own_storage(method.aggregate(jac, losses), jac)  # type: ignore[attr-defined]
        used.write_direction(direction)
    if weighting:
        method.update(losses, step, norms)
    return StepResult(weights, stack, norms, None if rep is None else rep.layout)
