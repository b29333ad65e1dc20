"""MGDA: the min-norm point of the convex hull of the task gradients."""

from __future__ import annotations

import numpy as np
import torch

from mtldiag.methods._utils import checks
from mtldiag.methods._utils.convert import REDUCTION_HELP, finite_or_zero, to_numpy, to_torch
from mtldiag.methods._utils.qp import simplex_qp
from mtldiag.methods.base import GramianMethod, HyperParam

NORMALIZATIONS = ("none", "l2", "loss", "loss+")


class MGDA(GramianMethod):
    """MGDA-UB's min-norm solver (Sener & Koltun, NeurIPS 2018, Alg. 2 / Désidéri 2012).

    ``w = argmin_{w in simplex} ||sum_i w_i g_i||²`` (= ``wᵀGw``); the direction
    ``d = sum_i w_i g_i`` has ``g_iᵀd >= ||d||² >= 0`` for every task: no task's loss
    increases to first order.

    The paper solves it with Frank-Wolfe (Alg. 2), stopped early; mtldiag solves the same
    problem *exactly* with an active-set method on the (equilibrated) Gramian, Wolfe's
    min-norm-point algorithm on its square-root factor when rounding makes the first cycle,
    and projected gradient only past T = 64 (see :mod:`mtldiag.methods._utils.qp`). On
    ill-conditioned or near-antipodal gradients Frank-Wolfe (TorchJD, LibMTL) can stop far
    from the optimum; this solver matches an exact QP to ~1e-8 in direction.

    :param normalization: ``none`` | ``l2`` (``g_i/||g_i||``) | ``loss`` (``g_i/L_i``) |
        ``loss+`` (``g_i/(L_i ||g_i||)``) — the authors' code option (not in the paper). As in
        the authors' code, the weights are found on the normalised gradients and applied to
        the raw ones (LibMTL applies them to the normalised gradients instead).
    :param reduction: ``sum`` (default: weights sum to T, like nash-mtl's MGDA and EW's
        scale) or ``mean`` (the paper's convex combination, sum 1).
    """

    name = "mgda"
    aliases = ("mgda_ub", "min_norm")
    paper = "Sener & Koltun, NeurIPS 2018 (Alg. 2)"
    params = (
        HyperParam("normalization", "none", "none | l2 | loss | loss+"),
        HyperParam("reduction", "sum", REDUCTION_HELP),
    )

    def __init__(self, normalization: str = "none", reduction: str = "sum") -> None:
        self.normalization = checks.choice("normalization", normalization, NORMALIZATIONS)
        self.reduction = checks.choice("reduction", reduction, ("sum", "mean"))

    def _normalizers(self, g: np.ndarray, losses: torch.Tensor | None) -> np.ndarray:
        n = len(g)
        norms = np.sqrt(np.clip(np.diag(g), 0.0, None))
        if self.normalization == "none":
            return np.ones(n)
        if self.normalization == "l2":
            return norms
        if losses is None:
            raise ValueError(f"mgda normalization={self.normalization} needs the losses")
        ls = losses.detach().double().cpu().numpy().reshape(-1)
        return ls if self.normalization == "loss" else ls * norms

    def weights_from_gramian(
        self, gramian: torch.Tensor, losses: torch.Tensor | None = None
    ) -> torch.Tensor:
        g = to_numpy(gramian, self.precision(gramian))
        scale = self._normalizers(g, losses)
        scale = np.where(np.abs(scale) > 0, scale, 1.0)
        gn = g / np.outer(scale, scale)
        w = finite_or_zero(simplex_qp(gn))
        if self.reduction == "sum":
            w = w * len(w)
        return to_torch(w, gramian)
