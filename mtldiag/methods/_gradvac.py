"""GradVac: pull each pair's gradient cosine up to its running (EMA) target."""

from __future__ import annotations

import math

import numpy as np
import torch

from mtldiag.methods._utils import checks
from mtldiag.methods._utils.convert import to_numpy, to_torch
from mtldiag.methods.base import GramianMethod, HyperParam, RunContext


class GradVac(GramianMethod):
    """Gradient Vaccine (Wang, Tsvetkov, Firat & Cao, ICLR 2021, Alg. 1).

    For each task i, over the other tasks j in random order: with
    ``φ_ij = cos(g_i^PC, g_j)`` and the EMA target ``φ̂_ij`` (starting at 0), if
    ``φ_ij < φ̂_ij`` add ``||g_i^PC|| (φ̂ sqrt(1-φ²) - φ sqrt(1-φ̂²)) / (||g_j|| sqrt(1-φ̂²))``
    times ``g_j`` to ``g_i^PC``; then ``φ̂_ij <- (1-β) φ̂_ij + β φ_ij``. Update: ``sum_i g_i^PC``.
    As PCGrad, computed exactly in T-space with coefficients ``g_i^PC = sum_k C_ik g_k``.

    :param beta: EMA rate β (paper: 1e-2; LibMTL's default is 0.5, TorchJD's 0.5).
    :param eps: added to denominators (as TorchJD).

    Scope: the whole shared model is one group (the paper also applies it per layer or per
    parameter matrix). Differences: LibMTL updates the EMA only when a correction happens;
    as the paper and TorchJD we update it for every pair. Random order from a generator
    seeded with the run's seed.
    """

    name = "gradvac"
    aliases = ("grad_vac", "gradient_vaccine")
    paper = "Wang et al., ICLR 2021 (Alg. 1)"
    stateful = True
    keeps_task_state = True
    params = (
        HyperParam("beta", 0.01, "EMA rate of the target cosines, in [0, 1]"),
        HyperParam("eps", 1e-8, "added to denominators"),
    )

    def __init__(self, beta: float = 0.01, eps: float = 1e-8) -> None:
        self.beta = checks.real("beta", beta, low=0.0, high=1.0)
        self.eps = checks.real("eps", eps, low=0.0)
        self._gen: torch.Generator | None = None
        self._target: np.ndarray | None = None

    def reset(self, ctx: RunContext) -> None:
        super().reset(ctx)
        self._gen = torch.Generator().manual_seed(int(ctx.seed))
        self._target = np.zeros((ctx.n_tasks, ctx.n_tasks))

    def weights_from_gramian(
        self, gramian: torch.Tensor, losses: torch.Tensor | None = None
    ) -> torch.Tensor:
        g = to_numpy(gramian)
        n = len(g)
        if self._gen is None:
            self._gen = torch.Generator().manual_seed(0)
        if self._target is None or self._target.shape[0] != n:
            self._target = np.zeros((n, n))
        target, beta, eps = self._target, self.beta, self.eps
        rows = g.tolist()
        norm_j = [math.sqrt(max(rows[j][j], 0.0)) for j in range(n)]
        total = [0.0] * n
        for i in range(n):
            coef = [0.0] * n
            coef[i] = 1.0
            dots = list(rows[i])  # g_i^PC · g_k for every k
            sq = max(rows[i][i], 0.0)  # ||g_i^PC||²
            others = [j for j in range(n) if j != i]
            for idx in torch.randperm(len(others), generator=self._gen).tolist():
                j = others[idx]
                norm_i = math.sqrt(max(sq, 0.0))
                phi = dots[j] / (norm_i * norm_j[j] + eps)
                hat = float(target[i, j])
                if phi < hat:
                    s1 = math.sqrt(max(1.0 - phi * phi, 0.0))
                    s2 = math.sqrt(max(1.0 - hat * hat, 0.0))
                    c = norm_i * (hat * s1 - phi * s2) / (norm_j[j] * s2 + eps)
                    coef[j] += c
                    rj = rows[j]
                    # ||g + c g_j||² = ||g||² + 2c g·g_j + c²||g_j||²
                    sq = sq + 2.0 * c * dots[j] + c * c * rj[j]
                    dots = [dots[k] + c * rj[k] for k in range(n)]
                target[i, j] = (1.0 - beta) * hat + beta * phi
            total = [total[k] + coef[k] for k in range(n)]
        return to_torch(np.array(total), gramian)
