"""SDMGrad: MGDA regularised towards the mean gradient, ``d ∝ g_w + λ g0``."""

from __future__ import annotations

import numpy as np
import torch

from mtldiag.methods._utils import checks
from mtldiag.methods._utils.convert import REDUCTION_HELP, finite_or_zero, to_numpy, to_torch
from mtldiag.methods._utils.qp import project_simplex, simplex_qp
from mtldiag.methods.base import GramianMethod, HyperParam, RunContext


class SDMGrad(GramianMethod):
    """SDMGrad (Xiao, Ban & Ji, NeurIPS 2023, "Direction-oriented Multi-objective Learning:
    Simple and Provable Stochastic Algorithms", Alg. 1), single-batch form.

    The weights solve ``min_{w in simplex} ½ ||g_w + λ g0||²`` (``g_w = Jᵀw``, ``g0`` the mean
    gradient): MGDA's min-norm problem pulled towards the average direction; the update is
    ``d = (g_w + λ g0) / (1 + λ)``. ``λ = 0`` is MGDA, ``λ → ∞`` EW.

    :param lamda: the regularisation ``λ`` (paper/LibMTL default 0.3; spelled as there).
    :param solver: ``exact`` (default: the simplex QP ``½wᵀGw + λ wᵀG1/T`` solved by
        mtldiag's active-set solver) | ``sgd`` — the paper's stochastic inner loop as LibMTL
        runs it: ``niter`` steps of SGD (lr 5, momentum 0.5) with simplex projection on ``G``
        divided by the squared mean gradient norm, warm-started from the last step's ``w``.
    :param niter: inner iterations for ``solver=sgd`` (default 20).
    :param reduction: ``sum`` (default: ``T`` times the paper's mean-scale ``d``) or ``mean``.

    The paper samples three mini-batches per step (two for the inner problem's unbiased
    ``G``, one for ``d``); mtldiag uses the step's single batch for all three, like LibMTL's
    trainer fed one batch.
    """

    name = "sdmgrad"
    aliases = ("sdm_grad",)
    paper = "Xiao, Ban & Ji, NeurIPS 2023 (SDMGrad, Alg. 1)"
    stateful = True  # the warm start of solver=sgd
    params = (
        HyperParam("lamda", 0.3, "pull towards the mean gradient (0: MGDA)"),
        HyperParam("solver", "exact", "exact (simplex QP) | sgd (LibMTL's inner loop)"),
        HyperParam("niter", 20, "inner SGD iterations (solver=sgd)"),
        HyperParam("reduction", "sum", REDUCTION_HELP),
    )

    def __init__(
        self, lamda: float = 0.3, solver: str = "exact", niter: int = 20, reduction: str = "sum"
    ) -> None:
        self.lamda = checks.real("lamda", lamda, low=0.0)
        self.solver = checks.choice("solver", solver, ("exact", "sgd"))
        self.niter = checks.integer("niter", niter, low=1)
        self.reduction = checks.choice("reduction", reduction, ("sum", "mean"))
        self._w: np.ndarray | None = None

    def reset(self, ctx: RunContext) -> None:
        super().reset(ctx)
        self._w = None

    def _sgd(self, g: np.ndarray) -> np.ndarray:
        n = len(g)
        w = self._w if self._w is not None and len(self._w) == n else np.full(n, 1.0 / n)
        scale = float(np.mean(np.sqrt(np.clip(np.diag(g), 0.0, None))))
        q = g / (scale**2 + 1e-8)
        b = self.lamda * q.mean(axis=1)
        buf = None
        for _ in range(self.niter):
            grad = q @ w + b
            buf = grad if buf is None else 0.5 * buf + grad
            w = project_simplex(w - 5.0 * buf)
        self._w = w
        return w

    def weights_from_gramian(
        self, gramian: torch.Tensor, losses: torch.Tensor | None = None
    ) -> torch.Tensor:
        g = to_numpy(gramian, self.precision(gramian))
        n = len(g)
        if self.solver == "exact":
            w = finite_or_zero(simplex_qp(g, self.lamda * g.mean(axis=1)))
        else:
            w = self._sgd(g)
        out = (w + self.lamda / n) / (1.0 + self.lamda)
        if self.reduction == "sum":
            out = out * n
        return to_torch(out, gramian)
