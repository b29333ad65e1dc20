"""Preparing a run: the model and loader built under one seed, the shared parameters found."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from mtldiag.engine.device import autocast
from mtldiag.engine.jacobian import build_layout
from mtldiag.engine.shared import SharedSelection, select_shared
from mtldiag.errors import MtldiagError, UserCodeError
from mtldiag.methods.base import RunContext, TaskStats
from mtldiag.runs.build import BatchCycle, build_loader, build_model, move_to
from mtldiag.runs.losses import LossFn, build_loss_fn, check_losses
from mtldiag.runs.usercode import user_code_error
from mtldiag.spec import Spec


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
) -> dict[str, torch.Tensor | None]:
    """The batch's task losses under autocast (None: a task without labels in it)."""
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
    losses = _first_losses(spec, model, loader, loss_fn, seed, device)
    if shared is None:
        selection = select_shared(model, losses, spec.shared)
    else:
        selection = _same_names(model, shared)
    first = {t: float(v.detach()) for t, v in losses.items()}
    del losses
    model.zero_grad(set_to_none=True)
    return Prepared(spec, seed, device, model, loader, loss_fn, list(first), selection, first)


SEARCH_BATCHES = 20  # batches read to find every task's labels once (missing labels)


def _first_losses(
    spec: Spec, model: nn.Module, loader: Any, loss_fn: LossFn, seed: int, device: torch.device
) -> dict[str, torch.Tensor]:
    """Each task's loss on the first batch that has its labels (usually the first batch).

    Each loss keeps its own graph, so which parameters a task reaches is found even when no
    single batch labels every task.
    """
    batches = BatchCycle(loader, seed)
    found: dict[str, torch.Tensor] = {}
    names: list[str] = []
    for _ in range(SEARCH_BATCHES):
        losses = compute_losses(
            loss_fn, model, next(batches), spec.task_names or None, device, spec.precision
        )
        names = names or list(losses)
        found.update({t: v for t, v in losses.items() if v is not None and t not in found})
        if len(found) == len(names):
            return {t: found[t] for t in names}
    absent = [t for t in names if t not in found]
    raise UserCodeError(
        f"task(s) {', '.join(absent)} have no labels in the first {SEARCH_BATCHES} batches "
        "(their loss is None every time).",
        hint="check the data, or the missing: setting",
    )


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
        dtype=prep.selection.layout.params[0].dtype,
    )


def has_unused(prep: Prepared, tasks: Sequence[str]) -> bool:
    """Whether some trainable parameter is reached by none of ``tasks`` (DDP must be told)."""
    wanted = set(tasks)
    reached = prep.selection.reached_by
    return any(
        p.requires_grad and not wanted & set(reached.get(n, ()))
        for n, p in prep.model.named_parameters()
    )
