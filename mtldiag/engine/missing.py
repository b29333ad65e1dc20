"""Tasks absent from a step (a batch without their labels): the step runs on the others.

A task whose loss is ``None`` is left out of the step's Jacobian, so of its Gramians, of the
method's input and weights, and of the metrics (its entries are ``None``). A loss-weighting
method keeps seeing all T losses, the absent task's carried over from its last present step,
so its per-task state stays in step; only the present tasks' weights are applied. A gradient
method solves the problem of the present tasks; one whose state is indexed by task
(``keeps_task_state``: GradVac, Nash-MTL) or GradNorm (its norms need every task) refuses.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from mtldiag.engine.gramian import StepMetrics
from mtldiag.errors import TrainingError
from mtldiag.methods.base import Method, RunContext, WeightingMethod


class _PresentTasks(WeightingMethod):
    """A weighting method seen through the present tasks of one step."""

    def __init__(self, method: WeightingMethod, present: list[int], full: torch.Tensor) -> None:
        self.method, self.present, self.full = method, present, full

    def reset(self, ctx: RunContext) -> None:  # the wrapped method was reset by its owner
        pass

    def weights(self, losses: torch.Tensor, step: int) -> torch.Tensor:
        return self.method.weights(self.full.to(losses), step)[self.present]

    def update(
        self, losses: torch.Tensor, step: int, grad_norms: torch.Tensor | None = None
    ) -> None:
        self.method.update(self.full.to(losses), step, None)


def present_method(
    method: Method, present: list[int], full_losses: torch.Tensor, tasks: Sequence[str]
) -> Method:
    """The method to run a step on the ``present`` tasks with (see the module docstring)."""
    absent = [t for i, t in enumerate(tasks) if i not in present]
    if isinstance(method, WeightingMethod):
        if method.needs_grad_norms:
            raise TrainingError(
                f"{method.name} needs every task's gradient norm; task(s) "
                f"{', '.join(absent)} have no labels in this batch."
            )
        return _PresentTasks(method, present, full_losses)
    if method.keeps_task_state:
        raise TrainingError(
            f"{method.name} keeps per-task state and cannot leave out task(s) "
            f"{', '.join(absent)}, which have no labels in this batch."
        )
    return method


def carried_losses(
    present: list[int], values: torch.Tensor, last: torch.Tensor | None, n_tasks: int
) -> torch.Tensor:
    """All T losses: the present ones, the absent ones from ``last`` (1.0 before any)."""
    if last is None:
        full = torch.ones(n_tasks, dtype=values.dtype, device=values.device)
    else:
        full = last.clone()
    full[present] = values.to(full)
    return full


def expand(values: Sequence[float] | None, present: list[int], n_tasks: int) -> list | None:
    """A per-present-task list as a per-task one, ``None`` for the absent tasks."""
    if values is None:
        return None
    out: list[float | None] = [None] * n_tasks
    for k, i in enumerate(present):
        out[i] = values[k]
    return out


def expand_metrics(m: StepMetrics, present: list[int], n_tasks: int) -> StepMetrics:
    """Metrics of the present tasks as metrics of all T, ``None`` wherever an absent task is."""
    pairs = [(i, j) for i in range(n_tasks) for j in range(i + 1, n_tasks)]
    sub = {(present[a], present[b]): k for k, (a, b) in enumerate(m.pairs)}

    def by_pair(rows: list[list[float]]) -> list[list[float | None]]:
        return [[row[sub[p]] if p in sub else None for p in pairs] for row in rows]

    return StepMetrics(
        layers=m.layers,
        pairs=pairs,
        grad_norm=expand(m.grad_norm, present, n_tasks),  # type: ignore[arg-type]
        layer_norms=[expand(r, present, n_tasks) for r in m.layer_norms],  # type: ignore[misc]
        dot=by_pair(m.dot),  # type: ignore[arg-type]
        cosine=by_pair(m.cosine),  # type: ignore[arg-type]
        gms=by_pair(m.gms),  # type: ignore[arg-type]
    )
