"""ExcessMTL: task weights grown by their estimated excess risks."""

from __future__ import annotations

import torch

from mtldiag.methods._utils import checks
from mtldiag.methods.base import GradientMethod, HyperParam, RunContext


class ExcessMTL(GradientMethod):
    """ExcessMTL (He, Zhou, Lee & Zhao, ICML 2024, "Robust Multi-Task Learning with Excess
    Risks", Alg. 1).

    Each task's excess risk is estimated from a second-order expansion with a diagonal
    AdaGrad preconditioner: ``e_i = g_iᵀ diag(1/h_i) g_i`` with ``h_i = sqrt(sum_t g_i(t)² +
    1e-7)`` (accumulated over the run). On the first step ``e_i(0)`` is kept and the weights
    stay 1; afterwards ``w_i ← w_i exp(η e_i / e_i(0))`` (exponentiated-gradient ascent on the
    weights), renormalised to sum to T, and the update is ``d = sum_i w_i g_i``.

    :param robust_step_size: η (paper/LibMTL default 1e-2).

    Differences: the paper normalises by the first *epoch*'s estimate; mtldiag, as LibMTL,
    by the first step's. A task whose first estimate is 0 (zero gradient) keeps a ratio of 0.
    State: the T x P squared-gradient sums.
    """

    name = "excess_mtl"
    aliases = ("excessmtl", "excess")
    paper = "He et al., ICML 2024 (ExcessMTL, Alg. 1)"
    stateful = True
    params = (HyperParam("robust_step_size", 1e-2, "step size η of the weights"),)

    def __init__(self, robust_step_size: float = 1e-2) -> None:
        self.robust_step_size = checks.real("robust_step_size", robust_step_size, low=0.0)
        self._sq: torch.Tensor | None = None
        self._e0: torch.Tensor | None = None
        self._w: torch.Tensor | None = None

    def reset(self, ctx: RunContext) -> None:
        super().reset(ctx)
        self._sq = None
        self._e0 = None
        self._w = None

    @property
    def task_weights(self) -> torch.Tensor | None:
        """The current weights (sum T), or None before the first step."""
        return self._w

    def aggregate(self, jacobian: torch.Tensor, losses: torch.Tensor | None = None) -> torch.Tensor:
        j = jacobian.detach()
        t = j.shape[0]
        if self._sq is None or self._sq.shape != j.shape:
            self._sq = torch.zeros_like(j)
            self._e0 = None
            self._w = torch.ones(t, dtype=torch.float64)
        assert self._w is not None
        self._sq.addcmul_(j, j)
        h_inv = self._sq.add(1e-7).rsqrt_()  # 1 / h_i, one T x P buffer
        e = h_inv.mul_(j).mul_(j).sum(dim=1).double().cpu()  # g_iᵀ diag(1/h_i) g_i
        if self._e0 is None:
            self._e0 = e
        else:
            ratio = torch.where(self._e0 > 0, e / self._e0.clamp_min(1e-300), 0.0)
            w = self._w * torch.exp(self.robust_step_size * ratio)
            if torch.isfinite(w).all() and w.sum() > 0:
                self._w = w * (t / w.sum())
        return self._w.to(j) @ j
