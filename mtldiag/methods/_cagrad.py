"""CAGrad: the best worst-task improvement within a ball around the average gradient."""

from __future__ import annotations

import numpy as np
import torch

from mtldiag.methods._utils import checks
from mtldiag.methods._utils.convert import REDUCTION_HELP, rank_floor, to_numpy, to_torch
from mtldiag.methods._utils.lsq import simplex_qp_on_support
from mtldiag.methods._utils.qp import simplex_qp
from mtldiag.methods.base import GramianMethod, HyperParam


def cagrad_dual(g: np.ndarray, c: float) -> tuple[np.ndarray, float, float]:
    """Solve ``min_{w in simplex} wᵀG1/T + φ sqrt(wᵀGw)``, ``φ = c ||g0||``, exactly.

    Returns ``(w, ||g_w||, φ)``. Writing ``sqrt(q) = min_t (q/t + t)/2`` turns it into the
    QP ``min ½wᵀGw + s bᵀw`` (``b = G1/T``) at ``s = t/φ``; the optimum is the root of
    ``ψ(s) = ||g_w(s)||/φ - s``. On a fixed support the QP's solution is affine in s
    (``w = a + s c``), so the root on that support solves a quadratic equation exactly. We
    bracket the root of ψ, bisect (regula falsi) with exact active-set QPs, and stop as soon
    as the quadratic's root on the current support is feasible and optimal.
    """
    n = len(g)
    b = g.mean(axis=1)
    g0_sq = max(float(g.mean()), 0.0)
    phi = c * np.sqrt(g0_sq)
    if phi <= 0.0 or n == 1:
        return np.full(n, 1.0 / n), 0.0, phi
    s_floor = 1e-7 * np.sqrt(g0_sq) / phi  # t below 1e-7 ||g0||: the degenerate kink
    state: dict[str, np.ndarray | None] = {"w": None}

    def solve(s: float) -> tuple[float, np.ndarray | None, np.ndarray]:
        """ψ(s), an exact optimum found on this support (or None), and w(s)."""
        w = simplex_qp(g, s * b, warm=state["w"])
        state["w"] = w
        t = float(np.sqrt(max(w @ g @ w, 0.0)))
        sup = [i for i in range(n) if w[i] > 0]
        a, cc = simplex_qp_on_support(g, b, sup)
        gs = g[np.ix_(sup, sup)]
        qa, qac, qc = a @ gs @ a, a @ gs @ cc, cc @ gs @ cc
        # (a + r c)ᵀG(a + r c) = φ² r²  <=>  (qc - φ²) r² + 2 qac r + qa = 0
        coeffs = [qc - phi**2, 2.0 * qac, qa]
        roots = np.roots(coeffs) if any(coeffs) else np.array([])
        for root in np.atleast_1d(roots):
            r = float(root.real)
            if abs(root.imag) > 1e-12 * max(1.0, abs(r)) or r <= s_floor:
                continue
            ws = a + r * cc
            if np.any(ws < -1e-12):
                continue
            cand = np.zeros(n)
            cand[sup] = np.maximum(ws, 0.0)
            cand /= cand.sum()
            grad = g @ cand + r * b
            lam = float(grad[sup].mean())
            tol = 1e-9 * (np.abs(g) @ cand + r * np.abs(b) + abs(lam))
            if np.all(grad >= lam - tol):
                return 0.0, cand, w
        return t / phi - s, None, w

    s0 = np.sqrt(g0_sq) / phi  # t = ||g0|| as a first guess
    psi0, exact, w = solve(s0)
    if exact is not None:
        return exact, float(np.sqrt(max(exact @ g @ exact, 0.0))), phi
    lo, hi, f_lo, f_hi = s0, s0, psi0, psi0
    for _ in range(200):  # bracket: ψ(lo) >= 0 >= ψ(hi)
        if f_lo >= 0 and f_hi <= 0:
            break
        if f_hi > 0:
            hi *= 2.0
            f_hi, exact, w = solve(hi)
        else:
            lo *= 0.5
            if lo < s_floor:  # ψ < 0 down to t -> 0: Pareto-stationary, no correction
                return w, 0.0, phi
            f_lo, exact, w = solve(lo)
        if exact is not None:
            return exact, float(np.sqrt(max(exact @ g @ exact, 0.0))), phi
    side = 0
    for _ in range(200):
        if hi - lo <= 1e-14 * hi:
            break
        # Illinois regula falsi, with bisection when it stalls.
        mid = hi - f_hi * (hi - lo) / (f_hi - f_lo) if f_hi != f_lo else 0.5 * (lo + hi)
        if not lo < mid < hi:
            mid = 0.5 * (lo + hi)
        f_mid, exact, w = solve(mid)
        if exact is not None:
            return exact, float(np.sqrt(max(exact @ g @ exact, 0.0))), phi
        if f_mid >= 0:
            lo, f_lo = mid, f_mid
            if side == 1:
                f_hi *= 0.5
            side = 1
        else:
            hi, f_hi = mid, f_mid
            if side == -1:
                f_lo *= 0.5
            side = -1
    return w, float(np.sqrt(max(w @ g @ w, 0.0))), phi


class CAGrad(GramianMethod):
    """CAGrad (Liu, Liu, Jin, Stone & Liu, NeurIPS 2021, Alg. 1).

    ``max_d min_i g_iᵀd`` subject to ``||d - g0|| <= c ||g0||`` (``g0`` the mean gradient),
    solved through its dual over the simplex, ``min_w g_wᵀg0 + c||g0|| ||g_w||``, giving
    ``d = g0 + (c ||g0|| / ||g_w||) g_w``. The dual is solved exactly in T-space
    (:func:`cagrad_dual`) rather than with SciPy's SLSQP (authors, LibMTL) or cvxpy (TorchJD).

    :param c: radius factor, ``c >= 0`` (paper: 0.4 on NYUv2/Cityscapes, 0.5 in its code's
        default; ``c = 0`` is EW).
    :param rescale: ``0`` none, ``1`` divide by ``1 + c²`` (authors' default), ``2`` by
        ``1 + c``.
    :param reduction: ``sum`` (default; ``T`` times the paper's mean-scale direction, so
        ``c = 0`` equals EW) or ``mean`` (the paper's scale).

    When ``||g_w||`` vanishes (0 is in the hull: Pareto-stationary) and ``c >= 1``, the ball
    contains ``d = 0``, which attains the optimum without conflicting with any task: the
    direction is 0 (as TorchJD). For ``c < 1`` the correction term is dropped (``d = g0``);
    the authors' code divides by ``1e-8`` there.
    """

    name = "cagrad"
    aliases = ("ca_grad", "conflict_averse")
    paper = "Liu et al., NeurIPS 2021 (Alg. 1)"
    params = (
        HyperParam("c", 0.4, "radius of the ball around the mean gradient (x ||g0||)"),
        HyperParam("rescale", 1, "0 none | 1 divide by 1+c² | 2 divide by 1+c"),
        HyperParam("reduction", "sum", REDUCTION_HELP),
    )

    def __init__(self, c: float = 0.4, rescale: int = 1, reduction: str = "sum") -> None:
        self.c = checks.real("c", c, low=0.0)
        self.rescale = checks.choice("rescale", rescale, (0, 1, 2))
        self.reduction = checks.choice("reduction", reduction, ("sum", "mean"))

    def weights_from_gramian(
        self, gramian: torch.Tensor, losses: torch.Tensor | None = None
    ) -> torch.Tensor:
        g = to_numpy(gramian, self.precision(gramian))
        n = len(g)
        w, t, phi = cagrad_dual(g, self.c)
        out = np.full(n, 1.0 / n)
        top = float(np.max(np.diag(g))) if n else 0.0
        # ||g_w|| below this is 0 up to the rounding of G's precision: Pareto-stationary.
        floor = max(1e-12, np.sqrt(rank_floor(self.precision(gramian), n)))
        if phi > 0 and t > floor * np.sqrt(max(top, 0.0)):
            out = out + (phi / t) * w
        elif phi > 0 and self.c >= 1.0:
            # 0 is in the hull: no direction improves every task, and with c >= 1 the ball
            # holds d = 0, which attains the optimum max_d min_i g_iᵀd = 0 without conflict.
            out = np.zeros(n)
        if self.rescale == 1:
            out = out / (1.0 + self.c**2)
        elif self.rescale == 2:
            out = out / (1.0 + self.c)
        if self.reduction == "sum":
            out = out * n
        if not np.all(np.isfinite(out)):
            out = np.full(n, 1.0 if self.reduction == "sum" else 1.0 / n)
        return to_torch(out, gramian)
