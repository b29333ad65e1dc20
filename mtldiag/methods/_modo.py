"""MoDo: MGDA's weights tracked by one projected-gradient step per training step."""

from __future__ import annotations

import numpy as np
import torch

from mtldiag.methods._utils import checks
from mtldiag.methods._utils.convert import REDUCTION_HELP, to_numpy, to_torch
from mtldiag.methods._utils.qp import project_simplex
from mtldiag.methods.base import GramianMethod, HyperParam, RunContext


class MoDo(GramianMethod):
    """MoDo (Chen, Fernando, Ying & Chen, NeurIPS 2023, "Three-Way Trade-Off in
    Multi-Objective Learning", Alg. 1), single-batch form: all three gradient samples are this
    step's batch.

    Weights ``λ`` on the simplex (start ``1/T``) take one projected step on MGDA's objective
    per training step, ``λ ← Π_Δ(λ − γ (G λ + ρ λ))``, and the update is ``d = Jᵀλ``.
    The paper draws three independent mini-batches per step (two for an unbiased ``G``, one
    for ``d``); mtldiag's trainer gives one batch, so — as LibMTL's trainer can feed it the
    same batch three times — ``G`` and ``d`` come from the step's batch (``G`` is then a
    biased estimate, as in MGDA).

    :param gamma: step size of λ (paper/LibMTL default 1e-3; scale-dependent: ``G`` is not
        normalised).
    :param rho: ℓ2 regularisation of λ's update (default 0.1).
    :param reduction: ``sum`` (default: ``T`` times the paper's ``Jᵀλ``) or ``mean``.
    """

    name = "modo"
    aliases = ("mo_do", "double_sampling")
    paper = "Chen et al., NeurIPS 2023 (MoDo, Alg. 1)"
    stateful = True
    params = (
        HyperParam("gamma", 1e-3, "step size of the weights λ"),
        HyperParam("rho", 0.1, "l2 regularisation of λ's update"),
        HyperParam("reduction", "sum", REDUCTION_HELP),
    )

    def __init__(self, gamma: float = 1e-3, rho: float = 0.1, reduction: str = "sum") -> None:
        self.gamma = checks.real("gamma", gamma, low=0.0)
        self.rho = checks.real("rho", rho, low=0.0)
        self.reduction = checks.choice("reduction", reduction, ("sum", "mean"))
        self._lam: np.ndarray | None = None

    def reset(self, ctx: RunContext) -> None:
        super().reset(ctx)
        self._lam = None

    def weights_from_gramian(
        self, gramian: torch.Tensor, losses: torch.Tensor | None = None
    ) -> torch.Tensor:
        g = to_numpy(gramian, self.precision(gramian))
        n = len(g)
        if self._lam is None or len(self._lam) != n:
            self._lam = np.full(n, 1.0 / n)
        lam = project_simplex(self._lam - self.gamma * (g @ self._lam + self.rho * self._lam))
        if np.all(np.isfinite(lam)):
            self._lam = lam
        w = self._lam * (n if self.reduction == "sum" else 1.0)
        return to_torch(w, gramian)
