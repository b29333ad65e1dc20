"""One task per step: the backward of a method that takes one task's gradient each step.

A method with ``tasks_per_step = 1`` (M-ConFIG) needs, at step ``s``, the gradient of task
``k = method.task_of_step(s)`` only: the step core (:func:`mtldiag.engine.step.backward_step`)
hands it here, and this takes one ``torch.autograd.grad`` of ``L_k`` over the shared
parameters and the heads — one backward instead of T. Only the heads ``L_k`` reaches get a
``.grad`` that step (as ``L_k.backward()`` would give them); the shared ``.grad`` is the
method's direction from the flat gradient.

An instrumented step still takes all T gradients, for its Gramians and metrics, but feeds
the method row ``k`` only and the heads task ``k``'s gradients only: the parameters after N
steps are the same whether or not (or how often) the steps are instrumented.

What the path does not do is refused in one sentence: gradient accumulation, torchrun,
representation mode and a ``GradScaler`` (the momenta would take a scaled, partial or
per-rank gradient), and a task without labels (``keeps_task_state``,
:mod:`mtldiag.engine.missing`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from mtldiag.engine import distributed
from mtldiag.engine.gramian import stacked_gramians_from_grads
from mtldiag.engine.jacobian import JacobianEngine, _storage
from mtldiag.methods.base import Method, MethodError


def one_task_per_step(method: Method) -> bool:
    """Whether the step core runs ``method`` through :func:`one_task_step`."""
    return getattr(method, "tasks_per_step", None) == 1


def refuse_unsupported(
    method: Method,
    *,
    accumulate: bool,
    representation: bool,
    loss_scale: float | None,
) -> None:
    """A :class:`MethodError` for what the one-task path does not support."""
    if accumulate:
        raise MethodError(
            f"{method.name} takes one task's gradient per step and does not support "
            "gradient accumulation.",
            hint="drop accumulate: (use a larger batch instead)",
        )
    if distributed.context() is not None:
        raise MethodError(
            f"{method.name} takes one task's gradient per step and does not run under torchrun.",
            hint=f"run {method.name} on one process (python -m mtldiag, not torchrun)",
        )
    if representation:
        raise MethodError(
            f"{method.name} takes one task's gradient per step over the shared parameters, "
            "not the representation.",
            hint="drop --wrt representation (mtl_representation / features=)",
        )
    if loss_scale is not None:
        raise MethodError(
            f"{method.name} normalises its update itself and does not take a GradScaler's "
            "scaled gradients (fp16).",
            hint="use precision bf16 or fp32",
        )


def one_task_step(
    engine: JacobianEngine,
    method: Method,
    ordered: Sequence[torch.Tensor],
    losses: torch.Tensor,
    step: int,
    *,
    per_task: bool,
) -> torch.Tensor | None:
    """Back-propagate task ``method.task_of_step(step)``'s loss; fill ``.grad``.

    ``per_task``: an instrumented step, whose (L+1, T, T) Gramians of all T tasks are
    returned (``None`` otherwise).
    """
    n = method.ctx.n_tasks
    if len(ordered) != n:
        raise MethodError(
            f"{method.name} takes one task's gradient per step in turn and needs all "
            f"{n} task losses at every step, got {len(ordered)}.",
            hint="give every batch labels for every task",
        )
    k = method.task_of_step(step)  # type: ignore[attr-defined]
    shared = list(engine.layout.params)
    others = engine.others
    stack = None
    heads: Sequence[torch.Tensor | None] = ()
    if per_task:
        rows: list[list[torch.Tensor | None]] = []
        for i, loss in enumerate(ordered):
            inputs = shared + others if i == k else shared
            grads = torch.autograd.grad(loss, inputs, retain_graph=i < n - 1, allow_unused=True)
            rows.append(list(grads[: len(shared)]))
            if i == k:
                heads = grads[len(shared) :]
        stack = stacked_gramians_from_grads(rows, engine.layout)
        row = rows[k]
    else:
        grads = torch.autograd.grad(ordered[k], shared + others, allow_unused=True)
        row, heads = list(grads[: len(shared)]), grads[len(shared) :]
    # autograd may hand one tensor to several inputs: a head's .grad must not be a tensor
    # whose storage a shared .grad takes below.
    taken = {_storage(g) for g in row if g is not None}
    heads = [g.clone() if g is not None and _storage(g) in taken else g for g in heads]
    engine._accumulate_heads(others, heads, 1.0)
    # Task k's flat gradient and then the direction in the engine's reused (P,) buffer; the
    # shared .grad take autograd's tensors of row k, the direction copied in (no P-sized
    # allocation beyond autograd's own, as a plain backward).
    flat = engine.flatten(row)
    direction = method.task_direction(k, flat, losses, out=flat)  # type: ignore[attr-defined]
    engine.write_direction(direction, reuse=row)
    return stack
