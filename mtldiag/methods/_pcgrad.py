"""PCGrad: project each task gradient off the others it conflicts with."""

from __future__ import annotations

import torch

from mtldiag.methods._utils import checks
from mtldiag.methods._utils.convert import REDUCTION_HELP
from mtldiag.methods.base import GramianMethod, HyperParam, RunContext


class PCGrad(GramianMethod):
    """PCGrad (Yu et al., NeurIPS 2020, "Gradient Surgery for Multi-Task Learning", Alg. 1).

    For each task i, in a random order of the other tasks j: if ``g_i^PC · g_j < 0`` then
    ``g_i^PC -= (g_i^PC · g_j / ||g_j||²) g_j``; the update is ``sum_i g_i^PC``.

    Computed exactly in T-space: ``g_i^PC = sum_k C_ik g_k``, so ``g_i^PC · g_j = (C G)_ij``
    and a projection only changes ``C_ij``. The weights are ``w = 1ᵀC`` (the trainer then
    forms ``w @ J`` once), so the cost is O(T³) instead of O(T² P).

    :param reduction: ``sum`` (paper and authors' TensorFlow code; default) or ``mean``
        (WeiChengTseng/Pytorch-PCGrad's default).

    Randomness: one permutation per task per step from a generator seeded with the run's
    seed (reset re-seeds it). As TorchJD, a task is not projected on itself (the PyTorch port
    shuffles the full list, where ``g_i^PC · g_i < 0`` could only arise after projections).
    """

    name = "pcgrad"
    aliases = ("pc_grad", "gradient_surgery")
    paper = "Yu et al., NeurIPS 2020 (Alg. 1)"
    stateful = True  # the random generator
    params = (HyperParam("reduction", "sum", REDUCTION_HELP),)

    def __init__(self, reduction: str = "sum") -> None:
        self.reduction = checks.choice("reduction", reduction, ("sum", "mean"))
        self._gen: torch.Generator | None = None

    def reset(self, ctx: RunContext) -> None:
        super().reset(ctx)
        self._gen = torch.Generator().manual_seed(int(ctx.seed))

    def weights_from_gramian(
        self, gramian: torch.Tensor, losses: torch.Tensor | None = None
    ) -> torch.Tensor:
        if self._gen is None:  # used without reset(): seed 0, deterministic
            self._gen = torch.Generator().manual_seed(0)
        g = gramian.detach().to("cpu", torch.float64)
        n = g.shape[0]
        rows = g.tolist()
        diag = [rows[j][j] for j in range(n)]
        total = [0.0] * n
        for i in range(n):
            coef = [0.0] * n
            coef[i] = 1.0
            dots = list(rows[i])  # (g_i^PC · g_j) for every j
            for j in torch.randperm(n, generator=self._gen).tolist():
                if j == i or diag[j] <= 0.0:
                    continue
                if dots[j] < 0.0:
                    c = -dots[j] / diag[j]
                    coef[j] += c
                    rj = rows[j]
                    dots = [dots[k] + c * rj[k] for k in range(n)]
            total = [total[k] + coef[k] for k in range(n)]
        w = torch.tensor(total, dtype=torch.float64)
        if self.reduction == "mean":
            w = w / n
        return w.to(gramian.device)
