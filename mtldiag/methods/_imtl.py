"""IMTL-G: the direction with equal projections on every task's unit gradient."""

from __future__ import annotations

import numpy as np
import torch

from mtldiag.methods._utils import checks
from mtldiag.methods._utils.convert import REDUCTION_HELP, rank_floor, to_numpy, to_torch
from mtldiag.methods.base import GramianMethod, HyperParam


class IMTLG(GramianMethod):
    """IMTL-G (Liu, Li, Kuang, Xue, Chen, Yang, Liao & Zhang, ICLR 2021, "Towards Impartial
    Multi-task Learning", §3.2 / Alg. 1, gradient part).

    Finds ``d = sum_i w_i g_i`` with ``sum_i w_i = 1`` whose projections on every unit
    gradient ``u_i`` are equal: ``g_iᵀd ∝ ||g_i||``. With ``n = sqrt(diag G)`` this is
    ``w ∝ G⁺ n`` (TorchJD's form, which also covers dependent gradients); the paper's
    closed form ``α = g_1 Uᵀ (D Uᵀ)⁻¹`` gives the same weights when G is invertible.

    :param reduction: ``sum`` (default: weights sum to T) or ``mean`` (paper: sum to 1).

    Only the gradient part (IMTL-G) is implemented; the paper's loss part (IMTL-L, learned
    loss scales) and LibMTL's hybrid IMTL are not. The pseudo-inverse drops eigenvalues
    below ``1e-12`` of the largest (``10·T·eps`` of the Gramian's precision when coarser
    than float64: a float32 Gramian's rounding eigenvalues are not directions). If
    ``sum(G⁺n)`` vanishes the weights are 0 (TorchJD too).
    """

    name = "imtl"
    aliases = ("imtl_g", "imtlg", "impartial")
    paper = "Liu et al., ICLR 2021 (IMTL-G)"
    params = (HyperParam("reduction", "sum", REDUCTION_HELP),)

    def __init__(self, reduction: str = "sum") -> None:
        self.reduction = checks.choice("reduction", reduction, ("sum", "mean"))

    def weights_from_gramian(
        self, gramian: torch.Tensor, losses: torch.Tensor | None = None
    ) -> torch.Tensor:
        g = to_numpy(gramian, self.precision(gramian))
        n = len(g)
        norms = np.sqrt(np.clip(np.diag(g), 0.0, None))
        lam, vec = np.linalg.eigh(g)
        # Rank decision at the precision G was formed in (float32 G: 10·T·eps32 of λmax).
        cut = max(1e-12, rank_floor(self.precision(gramian), n))
        keep = lam > cut * max(float(lam[-1]), 0.0)
        if not np.any(keep):
            return to_torch(np.zeros(n), gramian)
        pinv = (vec[:, keep] / lam[keep]) @ vec[:, keep].T
        v = pinv @ norms
        total = float(v.sum())
        if not np.isfinite(total) or abs(total) < 1e-12 * float(np.abs(v).sum() + 1e-300):
            return to_torch(np.zeros(n), gramian)
        w = v / total
        if self.reduction == "sum":
            w = w * n
        return to_torch(w, gramian)
