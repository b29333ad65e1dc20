"""Which parameters are shared between tasks: detected on a probe batch, or chosen by globs."""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from mtldiag.engine.jacobian import SharedLayout, build_layout
from mtldiag.errors import SpecError, UserCodeError


@dataclass(frozen=True)
class SharedSelection:
    """The shared parameters (in Jacobian column order), the rest, and who reaches what."""

    layout: SharedLayout
    others: tuple[torch.Tensor, ...]
    other_names: tuple[str, ...]
    reached_by: dict[str, tuple[str, ...]]  # parameter name -> tasks whose loss reaches it


def trainable(model: nn.Module) -> list[tuple[str, torch.Tensor]]:
    """Named trainable parameters; tied parameters appear once (named_parameters dedups)."""
    return [(n, p) for n, p in model.named_parameters() if p.requires_grad]


def reach(
    losses: Mapping[str, torch.Tensor], params: Sequence[tuple[str, torch.Tensor]]
) -> dict[str, tuple[str, ...]]:
    """For each parameter, the tasks whose loss has it in its autograd graph."""
    tensors = [p for _, p in params]
    out: dict[str, list[str]] = {n: [] for n, _ in params}
    for task, loss in losses.items():
        grads = torch.autograd.grad(loss, tensors, retain_graph=True, allow_unused=True)
        for (name, _), g in zip(params, grads, strict=True):
            if g is not None:
                out[name].append(task)
    return {k: tuple(v) for k, v in out.items()}


def select_shared(
    model: nn.Module,
    losses: Mapping[str, torch.Tensor],
    shared: str | Sequence[str] = "auto",
) -> SharedSelection:
    """Shared parameters: reached by two or more tasks (``auto``) or matched by globs."""
    params = trainable(model)
    if not params:
        raise UserCodeError("the model has no trainable parameters.")
    reached = reach(losses, params)
    tasks = list(losses)
    if shared == "auto":
        chosen = [(n, p) for n, p in params if len(reached[n]) >= 2]
        if not chosen:
            raise UserCodeError(
                "no parameter is reached by two or more tasks' losses: nothing is shared.",
                hint="check that every task's output comes from the shared trunk",
            )
    else:
        patterns = list(shared)
        chosen = [(n, p) for n, p in params if any(fnmatch.fnmatchcase(n, g) for g in patterns)]
        for g in patterns:
            if not any(fnmatch.fnmatchcase(n, g) for n, _ in params):
                sample = ", ".join(n for n, _ in params[:6])
                raise SpecError(
                    f"shared pattern '{g}' matches no trainable parameter.",
                    hint=f"parameter names look like: {sample}",
                )
    names = {n for n, _ in chosen}
    if len(tasks) >= 2:
        for task in tasks:
            if not any(task in reached[n] for n in names):
                raise UserCodeError(
                    f"task '{task}' does not reach any shared parameter: its loss has no "
                    "gradient on the shared layers.",
                    hint="check its output comes from the shared trunk, or widen 'shared:'",
                )
    layout = build_layout(chosen)
    others = [(n, p) for n, p in params if n not in names]
    return SharedSelection(
        layout=layout,
        others=tuple(p for _, p in others),
        other_names=tuple(n for n, _ in others),
        reached_by=reached,
    )
