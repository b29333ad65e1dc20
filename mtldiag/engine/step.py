"""The one step core: a method's backward over the T task losses, whoever runs the loop.

:class:`~mtldiag.engine.probe.GradientProbe` (the instrument), :class:`~mtldiag.engine.balancer.
Balancer` (a method in a user's loop) and so the trainer all call :func:`backward_step`. It
chooses, per method family and step, the cheapest pass that gives what the step needs:

* **per-task gradient lists** (``JacobianEngine.task_grads``) when the step needs per-task
  gradients (an instrumented step, or a Gramian method) and no ``J`` is required: Gramians by
  dot products, the update summed in place into the lists — no T x P copy;
* **the Jacobian** ``J`` (T x P) for methods whose ``aggregate`` reads it (GradDrop-like) and
  under torchrun, which averages ``J`` across ranks in one collective;
* **one task's gradient** (one ``autograd.grad`` of ``L_k``, ``k = step mod T``) for a method
  with ``tasks_per_step = 1`` (M-ConFIG; :mod:`mtldiag.engine.alternating`);
* **one backward** of ``sum_i w_i L_i`` for a weighting method's plain step (plus, for
  GradNorm-like methods, one partial ``autograd.grad`` per task on the layer it normalises;
  or, when that layer is an ``nn.Linear`` whose input and output a ``capture`` holds, T
  passes through the heads and one through the trunk, the norms in closed form:
  :mod:`mtldiag.engine.linear_norms`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import torch
from torch import nn

from mtldiag.engine import distributed
from mtldiag.engine.alternating import one_task_per_step, one_task_step, refuse_unsupported
from mtldiag.engine.gramian import stacked_gramians, stacked_gramians_from_grads
from mtldiag.engine.jacobian import JacobianEngine, SharedLayout
from mtldiag.engine.linear_norms import LinearCapture, heads_only, linear_capture, linear_norm_pass
from mtldiag.engine.micro import MicroBatches, scaled
from mtldiag.engine.representation import RepresentationEngine
from mtldiag.methods.base import GramianMethod, Method, MethodError, WeightingMethod


@dataclass(frozen=True)
class StepResult:
    """What one backward step computed besides the ``.grad`` it filled."""

    weights: torch.Tensor | None  # (T,) the method's weights; None for GradDrop-like methods
    gramians: torch.Tensor | None  # (L+1, T, T): whole shared set, then each layer; if taken
    grad_norms: torch.Tensor | None  # (T,) what a GradNorm-like method was given
    complete: bool = True  # False: a micro-batch was added, .grad is not the update yet
    finite: bool = True  # False: inf/NaN per-task gradients under a loss scale; no update
    losses: torch.Tensor | None = None  # (T,) what the method saw: the micro-batches' mean
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


def norm_capture(
    method: Method, model: nn.Module | None, layout: SharedLayout, others: Sequence[torch.Tensor]
) -> LinearCapture | None:
    """The hook for closed-form GradNorm norms, where they can be exact, else ``None``.

    The one rule of the probe and the :class:`~mtldiag.engine.balancer.Balancer`: a method that
    needs gradient norms on the last shared layer (not ``"all"``), one process (torchrun
    averages the norms across ranks), and that layer an ``nn.Linear`` of ``model`` found by
    its parameters' identity (:func:`~mtldiag.engine.linear_norms.linear_capture`). The hook
    sees forwards from the next one on; each step still checks it (:func:`_plain_step`).
    """
    if model is None or not getattr(method, "needs_grad_norms", False):
        return None
    if distributed.context() is not None or not layout.layers:
        return None
    if getattr(method, "grad_norm_layer", "last") == "all":
        return None
    params = grad_norm_params(layout, "last")
    return linear_capture(model, params, [*layout.params, *others])


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
    loss_scale: float | None = None,
    micro: MicroBatches | None = None,
    features: torch.Tensor | None = None,
    capture: LinearCapture | None = None,
) -> StepResult:
    """Back-propagate the T task losses ``ordered`` through ``method``; fill every ``.grad``.

    ``losses``: the detached losses the method sees (already averaged across ranks under
    torchrun). ``per_task``: take the per-task gradients even for a weighting method (an
    instrumented step); a gradient method always takes them. ``ddp_syncs_plain_steps``: DDP
    already averages a plain backward's ``.grad`` (the trainer wraps the model), so a weighting
    method's plain step needs no average of its own. ``features``: the shared representation
    ``z``: representation mode (:mod:`mtldiag.engine.representation`), where the per-task
    gradients are taken w.r.t. ``z`` and the direction ``dz`` back-propagated once through the
    trunk; the family dispatch below is the same, on a :class:`RepresentationEngine`. A method
    with ``tasks_per_step = 1`` (M-ConFIG) takes :func:`~mtldiag.engine.alternating.
    one_task_step` instead: one task's loss per step, and none of ``micro``, ``features``,
    ``loss_scale`` or torchrun.

    ``loss_scale``: ``ordered`` were multiplied by it (a ``GradScaler``): the per-task
    gradients are unscaled before Gramians and method, the ``.grad`` written stays scaled for
    the scaler's ``unscale_``/``step``; a step whose per-task gradients are not finite runs no
    method and leaves a non-finite ``.grad``, so the scaler skips it (``finite`` False).
    ``micro``: gradient accumulation; this call adds one micro-batch, and ``.grad`` holds the
    step's update only when the result is ``complete`` (the K-th call). A weighting method's
    weights are chosen before the first micro-batch's backward, from its losses.
    ``capture``: the last shared ``nn.Linear``'s input and output of this forward (installed
    by :func:`norm_capture` for a GradNorm-like method: the probe's, or a ``Balancer``'s given
    ``model=``); a plain step then takes the norms without T weight-gradient products. It is
    cleared here whichever path the step takes.
    """
    if one_task_per_step(method):  # M-ConFIG: one task's loss per step (engine/alternating)
        refuse_unsupported(
            method,
            accumulate=micro is not None,
            representation=features is not None,
            loss_scale=loss_scale,
        )
        stack = one_task_step(engine, method, ordered, losses, step, per_task=per_task)
        if capture is not None:
            capture.clear()
        return StepResult(None, stack, None, losses=losses)
    weighting = isinstance(method, WeightingMethod)
    if micro is not None:
        losses = micro.add_losses(losses)  # the mean over the micro-batches so far
        ordered = scaled(ordered, 1.0 / micro.k)
        # GradNorm's norms must be those of the accumulated batch: read off its Gramian.
        per_task = per_task or (weighting and method.needs_grad_norms)  # type: ignore[union-attr]
    weights = None
    if weighting:
        if micro is None or micro.first:
            weights = method.weights(losses, step)  # type: ignore[union-attr]
            if micro is not None:
                micro.weights = weights
        else:
            weights = micro.weights
    rep = None
    if features is not None and (per_task or not weighting):
        if distributed.context() is not None or micro is not None:
            raise MethodError(
                "representation gradients run on one process without accumulation: "
                "drop --wrt representation, or torchrun / accumulate."
            )
        rep = RepresentationEngine(features, engine.others)
    if not per_task and weighting:
        assert weights is not None
        # Under torchrun .grad is averaged once, after the last micro-batch.
        average = not ddp_syncs_plain_steps and (micro is None or micro.last)
        result = _plain_step(engine, method, ordered, weights, average, loss_scale, capture)
        if micro is not None and not micro.last:
            return StepResult(weights, None, None, complete=False)
    elif rep is not None:
        result = _jacobian_step(rep, method, ordered, losses, weights, loss_scale, None)  # type: ignore[arg-type]
        result = replace(result, layout=rep.layout)
    elif distributed.context() is None and (weighting or isinstance(method, GramianMethod)):
        result = _grads_step(engine, method, ordered, losses, weights, loss_scale, micro)
    else:
        result = _jacobian_step(engine, method, ordered, losses, weights, loss_scale, micro)
    if capture is not None:
        capture.clear()  # the next step's forward captures afresh
    if result.complete and result.finite and weighting:
        method.update(losses, step, result.grad_norms)  # type: ignore[union-attr]
    return replace(result, losses=losses)


def scale_losses(
    scaler: torch.amp.GradScaler | None, ordered: Sequence[torch.Tensor]
) -> tuple[list[torch.Tensor], float | None]:
    """The losses as a ``GradScaler`` scales them, and the scale (None without one enabled)."""
    if scaler is None or not scaler.is_enabled():
        return list(ordered), None
    out = [scaler.scale(v) for v in ordered]
    return out, float(scaler.get_scale())  # one host sync per step, for the unscale


def _plain_step(
    engine: JacobianEngine,
    method: Method,
    ordered: Sequence[torch.Tensor],
    weights: torch.Tensor,
    average: bool,
    loss_scale: float | None,
    capture: LinearCapture | None = None,
) -> StepResult:
    """One backward of ``sum_i w_i L_i`` (a weighting method's plain step).

    A GradNorm-like method's norms: in closed form from a usable ``capture`` (one process, every
    weight non-zero and finite: the passes give ``w_i``-scaled gradients; every parameter the
    losses reach around the captured output a head), else one partial ``autograd.grad`` per
    task (and under torchrun the rank-averaged norms, as before).
    """
    norms: torch.Tensor | None = None
    fast = (
        method.needs_grad_norms  # type: ignore[union-attr]
        and capture is not None
        and capture.usable()
        and distributed.context() is None
        and bool(torch.isfinite(weights).all() and (weights != 0).all())
        and heads_only(ordered, capture.y, engine.others)  # type: ignore[union-attr,arg-type]
    )
    if fast:
        assert capture is not None
        norms = linear_norm_pass(capture, ordered, weights.to(ordered[0].dtype), engine.others)
    elif method.needs_grad_norms:  # type: ignore[union-attr]
        params = grad_norm_params(engine.layout, method.grad_norm_layer)  # type: ignore[union-attr]
        norms = _partial_norms(ordered, params)
    if norms is not None and loss_scale is not None:
        norms = norms / loss_scale
    if not fast:  # the closed-form pass already back-propagated sum_i w_i L_i
        total = (weights.to(ordered[0].dtype) * torch.stack(list(ordered)).reshape(-1)).sum()
        total.backward()
    if distributed.context() is not None and average:
        distributed.average_grads([*engine.layout.params, *engine.others])
    finite = norms is None or bool(torch.isfinite(norms).all())
    return StepResult(weights, None, norms, finite=finite)


def _grads_step(
    engine: JacobianEngine,
    method: Method,
    ordered: Sequence[torch.Tensor],
    losses: torch.Tensor,
    weights: torch.Tensor | None,
    loss_scale: float | None,
    micro: MicroBatches | None,
) -> StepResult:
    """Per-task gradient lists: Gramians by dot products, the update summed into them."""
    grads = engine.task_grads(list(ordered), head_weights=weights)
    if micro is not None:
        micro.add_grads(grads)
        if not micro.last:
            return StepResult(weights, None, None, complete=False)
        grads = micro.take_grads()
    stack = stacked_gramians_from_grads(grads, engine.layout)  # (L+1, T, T)
    if loss_scale is not None:
        stack = stack / loss_scale**2  # a power of two: exact
        if not bool(torch.isfinite(stack).all()):
            engine.combine_into_grads(grads, torch.ones(len(grads)))  # inf/NaN: the scaler skips
            return StepResult(weights, stack, None, finite=False)
    norms = None
    weighting = isinstance(method, WeightingMethod)
    if weighting and method.needs_grad_norms:
        norms = _norms_from_gramians(stack, method.grad_norm_layer)
    if not weighting:
        weights = method.weights_from_gramian(stack[0], losses)  # type: ignore[attr-defined]
    assert weights is not None
    engine.combine_into_grads(grads, weights)
    return StepResult(weights, stack, norms)


def _jacobian_step(
    engine: JacobianEngine,
    method: Method,
    ordered: Sequence[torch.Tensor],
    losses: torch.Tensor,
    weights: torch.Tensor | None,
    loss_scale: float | None,
    micro: MicroBatches | None,
) -> StepResult:
    """The Jacobian ``J``: for methods that read it, and under torchrun (averaged across ranks)."""
    jac = engine.compute(list(ordered), head_weights=weights)
    if micro is not None:
        micro.add_jacobian(jac)
        if not micro.last:
            return StepResult(weights, None, None, complete=False)
        jac = micro.take_jacobian()
    if distributed.context() is not None:
        distributed.average_(jac)  # T x P floats: the one large collective
        distributed.average_grads(engine.others)
    if loss_scale is not None:
        jac.mul_(1.0 / loss_scale)  # the methods see the true gradients
    stack = stacked_gramians(jac, engine.layout)  # (L+1, T, T)
    if loss_scale is not None and not bool(torch.isfinite(stack).all()):
        engine.write_direction(jac.sum(0))  # inf/NaN: the scaler skips the step
        return StepResult(weights, stack, None, finite=False)
    norms = None
    if isinstance(method, WeightingMethod) and method.needs_grad_norms:
        norms = _norms_from_gramians(stack, method.grad_norm_layer)
    if isinstance(method, GramianMethod):
        weights = method.weights_from_gramian(stack[0], losses)
    if weights is not None:
        direction = weights.to(jac) @ jac
    else:
        direction = own_storage(method.aggregate(jac, losses), jac)  # type: ignore[attr-defined]
    if loss_scale is not None:
        direction = direction * loss_scale  # scaled like the heads' .grad, for unscale_
    engine.write_direction(direction)
    return StepResult(weights, stack, norms)
