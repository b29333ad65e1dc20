"""ConFIG: the conflict-free direction from the pseudo-inverse of the unit task gradients."""

from __future__ import annotations

import numpy as np
import torch

from mtldiag.methods._utils import checks
from mtldiag.methods._utils.convert import REDUCTION_HELP, ZERO_ROW, rank_floor, to_numpy, to_torch
from mtldiag.methods.base import GramianMethod, HyperParam


class ConFIG(GramianMethod):
    """ConFIG (Liu, Chu & Thuerey, ICLR 2025, "ConFIG: Towards Conflict-free Training of
    Physics Informed Neural Networks", eq. 2-3 — the ``conflictfree`` package).

    With unit gradients ``u_i = g_i / ||g_i||`` stacked in ``U``, the direction is
    ``x = U⁺ 1`` (equal cosine with every task: ``u_iᵀx = 1`` when the ``u_i`` are linearly
    independent), rescaled by the paper's projection length:
    ``d = (sum_i g_iᵀx̂) x̂``, ``x̂ = x / ||x||``. In T-space, with ``N = diag(||g_i||)`` and
    the cosine matrix ``C = N⁻¹GN⁻¹``: ``x = Jᵀv``, ``v = N⁻¹ C⁺ 1``, and
    ``d = (1ᵀGv / vᵀGv) Jᵀv`` — a function of the Gramian only.

    :param reduction: ``sum`` (default; the paper's length ``sum_i g_iᵀx̂``, which is EW for
        identical gradients) or ``mean`` (divided by T).

    Non-conflicting (``J d > 0``) whenever the task gradients are linearly independent; with
    dependent ones ``U⁺1`` only matches ``1`` on the range of U. ``C⁺`` drops eigenvalues
    below ``1e-12`` of the largest (``10·T·eps`` of a coarser precision); a zero gradient gets
    weight 0 (``conflictfree`` maps its unit vector to 0 too); when ``1`` is orthogonal to the
    span of the unit gradients' Gramian (``x = 0``, e.g. opposite pairs) the direction is 0.
    The package's least-squares solve on the P-wide matrix gives the same ``x``; its
    momentum variant (M-ConFIG) and custom weight / length models are not implemented.
    """

    name = "config"
    aliases = ("con_fig", "conflictfree")
    paper = "Liu, Chu & Thuerey, ICLR 2025 (ConFIG, eq. 2-3)"
    params = (HyperParam("reduction", "sum", REDUCTION_HELP),)

    def __init__(self, reduction: str = "sum") -> None:
        self.reduction = checks.choice("reduction", reduction, ("sum", "mean"))

    def weights_from_gramian(
        self, gramian: torch.Tensor, losses: torch.Tensor | None = None
    ) -> torch.Tensor:
        g = to_numpy(gramian, self.precision(gramian))
        n = len(g)
        diag = np.clip(np.diag(g), 0.0, None)
        top = float(diag.max()) if n else 0.0
        live = diag > ZERO_ROW * top if top > 0 else np.zeros(n, dtype=bool)
        v = np.zeros(n)
        if np.any(live):
            norms = np.sqrt(diag[live])
            cos = g[np.ix_(live, live)] / np.outer(norms, norms)
            lam, vec = np.linalg.eigh(0.5 * (cos + cos.T))
            cut = max(1e-12, rank_floor(self.precision(gramian), n)) * max(float(lam[-1]), 0.0)
            keep = lam > cut
            coef = vec[:, keep].T @ np.ones(int(live.sum()))
            # 1 (nearly) orthogonal to the range of the unit gradients: x = U⁺1 vanishes and
            # its direction is rounding (e.g. rows ±u with as many of each sign): d = 0.
            if float(coef @ coef) <= max(1e-20, rank_floor(self.precision(gramian), n)) * n:
                return to_torch(np.zeros(n), gramian)
            c = (vec[:, keep] / lam[keep]) @ coef
            v[live] = c / norms
        sq = float(v @ g @ v)  # ||x||²
        if not np.isfinite(sq) or sq <= 0.0:
            return to_torch(np.zeros(n), gramian)
        w = v * (float(np.sum(g @ v)) / sq)
        if self.reduction == "mean":
            w = w / n
        return to_torch(w, gramian)
