"""Gradient accumulation: the sums over the K micro-batches of one optimizer step.

Each micro-batch's losses are divided by K before its backward, so the sums are the per-task
gradients of the mean loss over the K micro-batches: those of one step on the K micro-batches
concatenated (equal-sized, no batch-coupled layers). One T x P accumulator at most: the first
micro-batch's gradient tensors become the sums, later ones are added into them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import torch


def _storage(t: torch.Tensor) -> int:
    return t.untyped_storage().data_ptr()


class MicroBatches:
    """The running sums of one optimizer step's K micro-batches (``k >= 2``)."""

    def __init__(self, k: int) -> None:
        if k < 1:
            raise ValueError(f"Parameter `accumulate` should be >= 1. Found `accumulate = {k}`.")
        self.k = k
        self.count = 0
        self.weights: torch.Tensor | None = None  # a weighting method's, from micro-batch 1
        self._losses: torch.Tensor | None = None
        self._grads: list[list[torch.Tensor | None]] | None = None
        self._jac: torch.Tensor | None = None

    @property
    def first(self) -> bool:
        """Whether the micro-batch being added is the step's first."""
        return self.count == 1

    @property
    def last(self) -> bool:
        return self.count == self.k

    def add_losses(self, losses: torch.Tensor) -> torch.Tensor:
        """Count a micro-batch in; return the mean losses so far."""
        if self.count == self.k:
            self.reset()
        self.count += 1
        self._losses = losses.clone() if self._losses is None else self._losses + losses
        return self._losses / self.count

    def add_grads(self, grads: list[list[torch.Tensor | None]]) -> None:
        """Add per-task gradient lists (layout order) into the sums, in place."""
        if self._grads is None:
            # A tensor autograd handed to several inputs, or an expanded one, cannot be
            # summed into in place: those start from a copy.
            uses = Counter(_storage(g) for row in grads for g in row if g is not None)
            self._grads = [[_own(g, uses) for g in row] for row in grads]
            return
        for acc, row in zip(self._grads, grads, strict=True):
            for k, g in enumerate(row):
                if g is None:
                    continue
                if acc[k] is None:
                    acc[k] = g.clone()
                else:
                    acc[k].add_(g)  # type: ignore[union-attr]

    def add_jacobian(self, jac: torch.Tensor) -> None:
        """Add a micro-batch's ``J`` (the engine's reused buffer) into a T x P sum."""
        if self._jac is None:
            self._jac = jac.clone()
        else:
            self._jac.add_(jac)

    def take_grads(self) -> list[list[torch.Tensor | None]]:
        assert self._grads is not None
        grads, self._grads = self._grads, None
        return grads

    def take_jacobian(self) -> torch.Tensor:
        assert self._jac is not None
        jac, self._jac = self._jac, None
        return jac

    def reset(self) -> None:
        """Drop the sums (a new optimizer step starts)."""
        self.count = 0
        self.weights = None
        self._losses = None
        self._grads = None
        self._jac = None


def _own(g: torch.Tensor | None, uses: Counter[int]) -> torch.Tensor | None:
    if g is None:
        return None
    return g.clone() if uses[_storage(g)] > 1 or not g.is_contiguous() else g


def scaled(ordered: Sequence[torch.Tensor], factor: float) -> list[torch.Tensor]:
    """The losses times ``factor`` (the same tensors when it is 1: no extra graph node)."""
    return list(ordered) if factor == 1.0 else [v * factor for v in ordered]
