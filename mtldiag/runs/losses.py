"""Task losses from the spec: built-in loss functions, batch/output adapters, label statistics."""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from mtldiag.errors import UserCodeError
from mtldiag.methods.base import TaskStats
from mtldiag.runs.imports import resolve
from mtldiag.runs.usercode import user_code_error
from mtldiag.spec import Spec, TaskSpec

# A loss of None: the task has no labels in that batch (left out of the step).
LossFn = Callable[[nn.Module, Any], dict[str, torch.Tensor | None]]

_BUILTIN: dict[str, Callable[..., torch.Tensor]] = {
    "mse": F.mse_loss,
    "l1": F.l1_loss,
    "smooth_l1": F.smooth_l1_loss,
    "cross_entropy": F.cross_entropy,
    "bce_with_logits": F.binary_cross_entropy_with_logits,
    "nll": F.nll_loss,
}


class KeywordInputs(dict):
    """A dict batch without an ``inputs`` key: the model is called HF-style, ``model(**batch)``
    with the keys its ``forward`` accepts (all of them when it takes ``**kwargs``)."""


def split_batch(batch: Any) -> tuple[Any, Any]:
    """``(inputs, targets)`` from a batch: a pair ``(x, y)``, a flat ``(x, y1, y2, ...)`` (targets
    by index 0, 1, ...), a dict with an ``inputs`` key, or any other dict (keyword inputs)."""
    if isinstance(batch, Mapping):
        for key in ("inputs", "input", "x"):
            if key in batch:
                return batch[key], batch
        return KeywordInputs(batch), batch
    if isinstance(batch, Sequence) and not isinstance(batch, str) and len(batch) == 2:
        return batch[0], batch[1]
    if isinstance(batch, Sequence) and not isinstance(batch, str) and len(batch) > 2:
        return batch[0], tuple(batch[1:])
    raise UserCodeError(
        f"the batch is a {type(batch).__name__}; the tasks: form needs (inputs, targets) "
        "or a dict with 'inputs'.",
        hint="or write a 'losses: module:fn' function that takes (model, batch)",
    )


def _pick(container: Any, key: str | int | None, what: str, task: str) -> Any:
    if isinstance(container, Mapping):
        if key in container:
            return container[key]
        raise UserCodeError(
            f"task '{task}': the {what} has no key '{key}'; it has: "
            + ", ".join(map(str, container)),
            hint=f"set tasks.{task}.{'output' if what == 'model output' else 'target'}",
        )
    if isinstance(container, Sequence) and not isinstance(container, str):
        if isinstance(key, int) and -len(container) <= key < len(container):
            return container[key]
        raise UserCodeError(
            f"task '{task}': the {what} is a sequence of {len(container)}; "
            f"'{key}' is not an index into it.",
            hint=f"use a whole number 0..{len(container) - 1}",
        )
    if isinstance(container, torch.Tensor):
        return container  # a single tensor serves every task that names it
    raise UserCodeError(f"task '{task}': cannot take '{key}' from a {type(container).__name__}.")


def call_model(model: nn.Module, inputs: Any) -> Any:
    """``model(inputs)``, or ``model(**inputs)`` for :class:`KeywordInputs`."""
    if not isinstance(inputs, KeywordInputs):
        return model(inputs)
    params = inspect.signature(model.forward).parameters.values()
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return model(**inputs)
    names = {p.name for p in params}
    return model(**{k: v for k, v in inputs.items() if k in names})


def _loss_callable(task: TaskSpec, base_dir: Path) -> Callable[..., torch.Tensor]:
    assert task.loss is not None
    if task.loss in _BUILTIN:
        return _BUILTIN[task.loss]
    return resolve(task.loss, base_dir, what=f"loss of task '{task.name}'")


def _prepare_target(loss: str | None, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    # Regression targets of shape (B,) against predictions (B, 1) are the common slip.
    if loss in ("mse", "l1", "smooth_l1", "bce_with_logits"):
        target = target.to(pred.dtype)
        if pred.dim() == target.dim() + 1 and pred.shape[-1] == 1:
            target = target.unsqueeze(-1)
    elif loss in ("cross_entropy", "nll") and target.is_floating_point():
        target = _class_targets(loss, pred, target)
    return target


def _class_targets(loss: str, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Float targets of a classification loss: class ids stored as floats become ids; class
    probabilities (cross_entropy, same shape as the logits) pass; anything else is refused,
    since torch would train on it silently (a regression target gives a loss below zero)."""
    if target.shape != pred.shape or loss == "nll":
        if bool((target == target.round()).all()):
            return target.long()
        raise UserCodeError(
            f"{loss} needs class ids (whole numbers) as targets; got float values such as "
            f"{float(target[target != target.round()].reshape(-1)[0]):.4g}.",
            hint="is this a regression task? use loss: mse, l1 or smooth_l1",
        )
    rows = target.reshape(-1, target.shape[-1]) if target.dim() > 1 else target.reshape(1, -1)
    if not bool(((target >= 0) & (target <= 1)).all()) or not torch.allclose(
        rows.sum(-1), torch.ones_like(rows[:, 0]), atol=1e-3
    ):
        raise UserCodeError(
            "cross_entropy with float targets of the logits' shape needs class probabilities "
            "(each in [0, 1], each row summing to 1).",
            hint="is this a regression task? use loss: mse, l1 or smooth_l1",
        )
    return target


def _labelled(
    task: TaskSpec, pred: torch.Tensor, target: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor] | None:
    """Under ``missing: skip``: the samples that have a label (NaN marks a missing one, as
    does ``ignore_index`` for cross_entropy/nll); None when no sample has one."""
    if target.dim() == 0:
        target = target.reshape(1)
    if target.is_floating_point():
        absent = torch.isnan(target).reshape(target.shape[0], -1).any(dim=1)
        if bool(absent.all()):
            return None
        if bool(absent.any()):
            return pred[~absent], target[~absent]
        return pred, target
    if task.loss in ("cross_entropy", "nll"):
        ignore = task.loss_kwargs.get("ignore_index", -100)
        if bool((target == ignore).all()):
            return None  # the loss ignores the other ignored samples itself
    return pred, target


def build_loss_fn(spec: Spec) -> LossFn:
    """The ``(model, batch) -> {task: loss}`` function the spec describes."""
    if spec.losses is not None:
        user_fn = resolve(spec.losses, spec.base_dir, what="losses")
        return user_fn  # type: ignore[return-value]
    tasks = spec.tasks
    fns = {t.name: _loss_callable(t, spec.base_dir) for t in tasks}
    skip = spec.train.missing == "skip"

    def compute(model: nn.Module, batch: Any) -> dict[str, torch.Tensor | None]:
        inputs, targets = split_batch(batch)
        outputs = call_model(model, inputs)
        losses: dict[str, torch.Tensor | None] = {}
        for t in tasks:
            pred = _pick(outputs, t.output, "model output", t.name)
            target = _pick(targets, t.target, "batch targets", t.name)
            if skip:
                labelled = _labelled(t, pred, target)
                if labelled is None:
                    losses[t.name] = None
                    continue
                pred, target = labelled
            target = _prepare_target(t.loss, pred, target)
            try:
                losses[t.name] = fns[t.name](pred, target, **t.loss_kwargs)
            except Exception as exc:
                raise UserCodeError(
                    f"task '{t.name}': loss '{t.loss}' failed on prediction "
                    f"{tuple(pred.shape)} and target {tuple(target.shape)}: {exc}",
                    hint="check the task's output/target keys and the loss",
                ) from exc
        return losses

    return compute


def check_losses(
    losses: Any, expected: Sequence[str] | None, require_grad: bool = True
) -> dict[str, torch.Tensor | None]:
    """Validate what a loss function returned: a dict of scalar tensors (or None for a task
    without labels in the batch) with the right tasks."""
    if not isinstance(losses, Mapping) or not losses:
        raise UserCodeError(
            f"the losses function must return a non-empty dict {{task: scalar tensor}}, "
            f"not {type(losses).__name__}."
        )
    for name, value in losses.items():
        if value is None:
            continue  # the task has no labels in this batch
        if not isinstance(value, torch.Tensor):
            raise UserCodeError(
                f"loss of task '{name}' is a {type(value).__name__}, not a tensor "
                "(or None for a batch without its labels)."
            )
        if value.numel() != 1:
            raise UserCodeError(
                f"loss of task '{name}' is not a scalar: shape {tuple(value.shape)}.",
                hint="reduce it with .mean() (or set the loss's reduction to 'mean')",
            )
        if require_grad and not value.requires_grad:
            raise UserCodeError(
                f"loss of task '{name}' does not require grad: it is not connected to the model.",
                hint="compute it from the model's output without .detach() or torch.no_grad()",
            )
    if expected:
        missing = [t for t in expected if t not in losses]
        if missing:
            raise UserCodeError(
                f"the losses function returned no loss for task(s) {', '.join(missing)}; "
                f"it returned: {', '.join(map(str, losses))}."
            )
    return dict(losses)


def label_stats(spec: Spec, loader: Any, max_batches: int = 50) -> dict[str, TaskStats]:
    """Prior-predictor and initial losses per task from a pass over (up to) the first batches.

    Only the ``tasks:`` form with built-in losses has a closed form; other tasks get
    ``TaskStats(loss=...)`` with ``None`` values.
    """
    known = [t for t in spec.tasks if t.loss in _BUILTIN and spec.losses is None]
    stats: dict[str, TaskStats] = {t.name: TaskStats(loss=t.loss) for t in spec.tasks}
    if not known:
        return stats
    collected: dict[str, list[torch.Tensor]] = {t.name: [] for t in known}
    for i, batch in enumerate(_batches(loader)):
        if i >= max_batches:
            break
        try:
            _, targets = split_batch(batch)
            for t in known:
                y = _pick(targets, t.target, "batch targets", t.name)
                collected[t.name].append(torch.as_tensor(y).detach().cpu())
        except UserCodeError:
            return stats
    for t in known:
        if not collected[t.name]:
            continue
        y = torch.cat(
            [
                c.reshape(c.shape[0], -1) if c.dim() > 0 else c.reshape(1, 1)
                for c in collected[t.name]
            ]
        ).double()
        y = y[~torch.isnan(y).any(dim=1)]  # NaN: a missing label (missing: skip)
        if y.numel():
            stats[t.name] = _stats_for(t.loss, y)
    return stats


def _batches(loader: Any) -> Iterator[Any]:
    """The loader's batches; its own errors become one line naming the batch and the frame."""
    it = iter(loader)
    i = 0
    while True:
        try:
            batch = next(it)
        except StopIteration:
            return
        except Exception as exc:
            raise user_code_error(
                f"the data loader (batch {i})", exc, "check the data factory"
            ) from exc
        yield batch
        i += 1


def _stats_for(loss: str | None, y: torch.Tensor) -> TaskStats:
    if loss == "mse":
        # A zero-output model starts at E[y^2]; the best constant predicts the mean: Var[y].
        return TaskStats(float(y.var(dim=0, unbiased=False).mean()), float((y**2).mean()), loss)
    if loss in ("l1", "smooth_l1"):
        med = y.median(dim=0).values
        return TaskStats(float((y - med).abs().mean()), float(y.abs().mean()), loss)
    if loss in ("cross_entropy", "nll"):
        labels = y.reshape(-1).long()
        labels = labels[labels >= 0]
        k = int(labels.max()) + 1 if labels.numel() else 1
        freq = torch.bincount(labels, minlength=k).double()
        p = freq / freq.sum()
        entropy = float(-(p[p > 0] * p[p > 0].log()).sum())
        return TaskStats(entropy, math.log(max(k, 2)), loss)
    if loss == "bce_with_logits":
        p = y.mean(dim=0).clamp(1e-6, 1 - 1e-6)
        entropy = float((-(p * p.log() + (1 - p) * (1 - p).log())).mean())
        return TaskStats(entropy, math.log(2.0), loss)
    return TaskStats(loss=loss)
