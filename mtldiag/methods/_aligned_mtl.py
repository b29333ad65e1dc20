"""Aligned-MTL: make the task gradients orthogonal and equally long before summing."""

from __future__ import annotations

import numpy as np
import torch

from mtldiag.methods._utils import checks
from mtldiag.methods._utils.convert import REDUCTION_HELP, rank_floor, to_numpy, to_torch
from mtldiag.methods.base import GramianMethod, HyperParam


class AlignedMTL(GramianMethod):
    """Aligned-MTL (Senushkin, Patakin, Kuznetsov & Konushin, CVPR 2023, "Independent
    Component Alignment for Multi-Task Learning", Alg. 1).

    From the eigendecomposition ``G = V Λ Vᵀ`` (rank r), the balance transformation
    ``B = sqrt(λ_scale) V Λ^{-1/2} Vᵀ`` maps the gradients onto orthogonal ones of equal norm
    (condition number 1); the update is ``sum_i (aligned g_i)``, i.e. ``w = B 1``.

    :param scale_mode: ``min`` (smallest non-zero eigenvalue, authors' default) | ``median``
        | ``rmse`` (mean eigenvalue).
    :param reduction: ``sum`` (default; the authors' code sums the aligned gradients) or
        ``mean`` (TorchJD's default preference vector 1/T).

    Eigenvalues below ``λ_max · T · eps`` count as zero (as the authors' code), with ``eps``
    that of the precision the Gramian was formed in (``10 · T · eps`` below float64).
    """

    name = "aligned_mtl"
    aliases = ("alignedmtl", "aligned")
    paper = "Senushkin et al., CVPR 2023 (Alg. 1)"
    params = (
        HyperParam("scale_mode", "min", "min | median | rmse"),
        HyperParam("reduction", "sum", REDUCTION_HELP),
    )

    def __init__(self, scale_mode: str = "min", reduction: str = "sum") -> None:
        self.scale_mode = checks.choice("scale_mode", scale_mode, ("min", "median", "rmse"))
        self.reduction = checks.choice("reduction", reduction, ("sum", "mean"))

    def weights_from_gramian(
        self, gramian: torch.Tensor, losses: torch.Tensor | None = None
    ) -> torch.Tensor:
        g = to_numpy(gramian, self.precision(gramian))
        n = len(g)
        lam, vec = np.linalg.eigh(g)
        rel = max(n * float(np.finfo(np.float64).eps), rank_floor(self.precision(gramian), n))
        tol = max(float(lam[-1]), 0.0) * rel
        keep = lam > tol
        if not np.any(keep):
            w = np.ones(n)
        else:
            lam, vec = lam[keep], vec[:, keep]
            if self.scale_mode == "min":
                scale = float(lam.min())
            elif self.scale_mode == "median":
                scale = float(np.median(lam))  # mean of the middle two for even rank
            else:
                scale = float(lam.mean())
            bal = np.sqrt(scale) * (vec / np.sqrt(lam)) @ vec.T
            w = bal @ np.ones(n)
        if self.reduction == "mean":
            w = w / n
        return to_torch(w, gramian)
