"""FairGrad: α-fair allocation of the update among the tasks, ``G w = w^(−1/α)``."""

from __future__ import annotations

import numpy as np
import torch

from mtldiag.methods._utils import checks
from mtldiag.methods._utils.convert import ZERO_ROW, to_numpy, to_torch
from mtldiag.methods.base import GramianMethod, HyperParam, RunContext

RESIDUAL = 1e-8


def fair_weights(
    g: np.ndarray, alpha: float, max_iter: int = 100, tol: float = RESIDUAL
) -> tuple[np.ndarray, bool]:
    """Solve ``G w = w^(−1/α)``, ``w > 0``, to ``max_i |w_i^(1/α) (Gw)_i − 1| < tol``.

    The equation is the stationarity condition of the strictly convex
    ``f(w) = ½ wᵀGw − sum_i h(w_i)`` with ``h'(w) = w^(−1/α)`` (``h = log`` at α = 1, where
    this is Nash-MTL's ``G α = 1/α``; Hessian ``G + diag(w^(−1/α−1)/α)``), minimised by damped
    Newton with a backtracking line search that keeps ``w > 0``. ``G`` is divided by its
    Frobenius norm ``s`` first and ``w`` scaled back by ``s^(−α/(α+1))``. Rows with a zero
    gradient get weight 0 (they do not move ``d``) and are left out. No solution exists when
    a non-negative combination of the live gradients vanishes (``f`` unbounded below).
    """
    n = len(g)
    w_out = np.zeros(n)
    live = np.diag(g) > ZERO_ROW * max(float(np.max(np.diag(g))), 0.0) if n else np.zeros(0, bool)
    if not np.any(live):
        return w_out, True
    gl = g[np.ix_(live, live)]
    s = float(np.linalg.norm(gl))
    if not np.isfinite(s) or s == 0.0:
        return w_out, False
    q = gl / s
    p = 1.0 / alpha

    def h(x: np.ndarray) -> float:
        return float(np.sum(np.log(x))) if alpha == 1.0 else float(np.sum(x ** (1 - p)) / (1 - p))

    def f(x: np.ndarray) -> float:
        return 0.5 * float(x @ q @ x) - h(x)

    w = np.clip(np.diag(q), 1e-12, None) ** (-alpha / (alpha + 1.0))  # the diagonal's solution
    fw = f(w)
    scale = s ** (-alpha / (alpha + 1.0))

    def residual(x: np.ndarray) -> float:
        return float(np.max(np.abs(x**p * (q @ x) - 1.0)))

    res = residual(w)
    for _ in range(max_iter):
        if res < tol:
            break
        grad = q @ w - w ** (-p)
        hess = q + np.diag(p * w ** (-p - 1.0))
        try:
            step = -np.linalg.solve(hess, grad)
        except np.linalg.LinAlgError:
            break
        if not np.all(np.isfinite(step)):
            break
        t = 1.0
        neg = step < 0
        if np.any(neg):  # stay strictly inside w > 0
            t = min(1.0, 0.99 * float(np.min(-w[neg] / step[neg])))
        cand = w + t * step
        fc = f(cand)
        res_c = residual(cand)
        if not (np.isfinite(res_c) and res_c < res):
            # Not a plain Newton contraction: backtrack on f (Armijo). Near the solution f
            # is flat to rounding, which is why the residual test above comes first.
            slope = float(grad @ step)
            while not (fc <= fw + 1e-4 * t * slope) and t >= 1e-14:
                t *= 0.5
                cand = w + t * step
                fc = f(cand)
            if not np.isfinite(fc) or t < 1e-14:
                break
            res_c = residual(cand)
        w, fw, res = cand, fc, res_c
        if np.max(w) > 1e15 or np.min(w) < 1e-15:  # running off: unbounded below
            break
    ok = bool(res < tol)
    w_out[live] = w * scale
    return w_out, ok


class FairGrad(GramianMethod):
    """FairGrad (Ban & Ji, ICML 2024, "Fair Resource Allocation in Multi-Task Learning",
    Alg. 1).

    The update ``d = Jᵀw`` gives task i the utility ``u_i = g_iᵀd``; FairGrad maximises the
    α-fair welfare ``sum_i u_i^(1−α)/(1−α)`` over a ball of directions, whose optimum solves
    ``G w = w^(−1/α)`` (``w > 0``). Limits: ``α → 0`` is utilitarian (``u_i`` summed: the
    direction of EW), ``α = 1`` proportional fairness (exactly Nash-MTL's ``G α = 1/α``),
    ``α = 2`` minimum potential delay, ``α → ∞`` max-min fairness (equal gains
    ``g_iᵀd``, ``w ∝ G⁻¹1``).

    The equation is solved to a relative residual of 1e-8 by damped Newton on its convex
    potential (:func:`fair_weights`); the authors and LibMTL call SciPy's ``least_squares``
    from ``w = 1/T`` with its default tolerances, which can stop well short of that on
    ill-conditioned Gramians. As there, ``d = Jᵀw`` is not rescaled (its norm follows the
    gradients' scale as ``s^(1/(α+1))``).

    :param alpha: the fairness exponent, ``α > 0`` (LibMTL's default 1.0; the paper tunes it
        per benchmark).

    When the equation has no solution (a non-negative combination of the task gradients
    vanishes: a Pareto-stationary point), the previous step's weights are kept and
    :attr:`warnings` counts the steps, as for ``nash_mtl``.
    """

    name = "fairgrad"
    aliases = ("fair_grad",)
    paper = "Ban & Ji, ICML 2024 (Alg. 1)"
    stateful = True  # the last solution, kept when a step has none
    params = (HyperParam("alpha", 1.0, "fairness exponent α > 0 (1: Nash-MTL's equation)"),)

    def __init__(self, alpha: float = 1.0) -> None:
        self.alpha = checks.real("alpha", alpha, low=0.0, low_open=True)
        self._w: np.ndarray | None = None
        self.failed_steps = 0
        self._calls = 0

    def reset(self, ctx: RunContext) -> None:
        super().reset(ctx)
        self._w = None
        self.failed_steps = 0
        self._calls = 0

    @property
    def warnings(self) -> list[str]:
        if not self.failed_steps:
            return []
        return [
            f"fairgrad: G w = w^(-1/α) had no solution on {self.failed_steps} of "
            f"{self._calls} steps; those steps kept the previous weights"
        ]

    def weights_from_gramian(
        self, gramian: torch.Tensor, losses: torch.Tensor | None = None
    ) -> torch.Tensor:
        g = to_numpy(gramian, self.precision(gramian))
        n = len(g)
        self._calls += 1
        w, ok = fair_weights(g, self.alpha)
        if ok:
            self._w = w
        else:
            self.failed_steps += 1
            if self._w is None or len(self._w) != n:
                self._w = np.ones(n)
            w = self._w
        return to_torch(w, gramian)
