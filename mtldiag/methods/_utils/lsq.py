"""Point-based exact solvers in T-space: least squares on a factor of the Gramian.

* :func:`factor` — points ``P`` with ``P Pᵀ = G`` (keeps the square root of G's condition);
* :func:`min_norm_point` — Wolfe's min-norm point of a polytope (MGDA on points);
* :func:`nnls` / :func:`nnls_gram` — Lawson-Hanson non-negative least squares (UPGrad);
* :func:`simplex_qp_on_support` — the simplex QP solved on a known support (CAGrad).
"""

from __future__ import annotations

import numpy as np

from mtldiag.methods._utils.linalg import TOL, solve_sym, symmetric


def factor(gramian: np.ndarray) -> np.ndarray:
    """Points ``P`` (T x T) with ``P Pᵀ = G``: row i stands for task i's gradient.

    Working with these points instead of ``G`` (least squares on ``P`` rather than normal
    equations on ``G``) keeps the square root of ``G``'s condition number.
    """
    g = symmetric(gramian)
    lam, vec = np.linalg.eigh(g)
    return vec * np.sqrt(np.clip(lam, 0.0, None))


def affine_minimizer(pts: np.ndarray, idx: list[int]) -> np.ndarray:
    """Coefficients ``α`` (sum 1) of the min-norm point of the affine hull of ``pts[idx]``."""
    if len(idx) == 1:
        return np.ones(1)
    base = pts[idx[0]]
    diff = (pts[idx[1:]] - base).T  # (dim, k-1)
    scale = np.linalg.norm(diff, axis=0)
    scale = np.where(scale > 0, scale, 1.0)
    c = np.linalg.lstsq(diff / scale, -base, rcond=1e-14)[0] / scale
    return np.concatenate([[1.0 - c.sum()], c])


def min_norm_point(pts: np.ndarray, max_iter: int | None = None) -> tuple[np.ndarray, bool]:
    """Wolfe's (1976) min-norm-point algorithm on the convex hull of the rows of ``pts``.

    Returns ``(w, converged)`` with ``w`` on the simplex and ``wᵀpts`` the point of the hull
    nearest to the origin. Finite and exact up to rounding: each minor cycle computes the
    affine minimiser of the current corral by least squares (columns scaled to unit norm).
    """
    n = len(pts)
    norms2 = np.einsum("ij,ij->i", pts, pts)
    if np.max(norms2) == 0.0:
        return np.full(n, 1.0 / n), True
    j = int(np.argmin(norms2))
    corral, lam = [j], np.ones(1)
    x = pts[j].copy()
    max_iter = max_iter or 50 * n + 100
    for _ in range(max_iter):
        xx = float(x @ x)
        dots = pts @ x
        # Rounding in pts@x is ~eps*|p_j||x|: stop when no point beats x by more than that.
        tol = TOL * (np.sqrt(norms2) * np.sqrt(xx) + xx)
        cand = [i for i in range(n) if i not in corral]
        if not cand or xx == 0.0:
            break
        k = min(cand, key=lambda i: dots[i] + tol[i])
        if dots[k] >= xx - tol[k]:
            break
        corral.append(k)
        lam = np.append(lam, 0.0)
        for _ in range(n + 1):  # minor cycles
            alpha = affine_minimizer(pts, corral)
            if np.all(alpha > 1e-15):
                lam = alpha
                break
            neg = alpha <= 1e-15
            theta = np.min(lam[neg] / (lam[neg] - alpha[neg]))
            theta = float(np.clip(theta, 0.0, 1.0))
            lam = theta * alpha + (1.0 - theta) * lam
            keep = lam > 1e-15
            keep[int(np.argmin(np.where(neg, lam, np.inf)))] = False  # drop at least one
            corral = [c for c, kp in zip(corral, keep, strict=True) if kp]
            lam = lam[keep]
            lam = lam / lam.sum()
        x = lam @ pts[corral]
    else:
        w = np.zeros(n)
        w[corral] = lam
        return w, False
    w = np.zeros(n)
    w[corral] = lam
    return w, True


def nnls(a: np.ndarray, b: np.ndarray, max_iter: int | None = None) -> tuple[np.ndarray, bool]:
    """Lawson & Hanson's NNLS: ``argmin_{x >= 0} ||A x - b||`` (least squares on ``A_F``)."""
    m, n = a.shape
    x = np.zeros(n)
    passive: list[int] = []
    colnorm = np.linalg.norm(a, axis=0)
    max_iter = max_iter or 30 * n + 50
    bnorm = float(np.linalg.norm(b))
    for _ in range(max_iter):
        r = b - a @ x
        grad = a.T @ r
        tol = TOL * colnorm * (float(np.linalg.norm(r)) + bnorm) + 1e-300
        cand = [i for i in range(n) if i not in passive and grad[i] > tol[i]]
        if not cand:
            return x, True
        passive.append(max(cand, key=lambda i: grad[i] / max(colnorm[i], 1e-300)))
        for _ in range(n + 1):
            sub = a[:, passive]
            sc = np.linalg.norm(sub, axis=0)
            sc = np.where(sc > 0, sc, 1.0)
            z = np.linalg.lstsq(sub / sc, b, rcond=1e-14)[0] / sc
            if np.all(z > 0):
                x = np.zeros(n)
                x[passive] = z
                break
            xp = x[passive]
            neg = z <= 0
            theta = float(np.min(xp[neg] / (xp[neg] - z[neg])))
            xp = xp + theta * (z - xp)
            keep = xp > 1e-15 * max(1.0, float(np.max(np.abs(xp))))
            keep[int(np.argmin(np.where(neg, xp, np.inf)))] = False
            x = np.zeros(n)
            x[[p for p, k in zip(passive, keep, strict=True) if k]] = xp[keep]
            passive = [p for p, k in zip(passive, keep, strict=True) if k]
            if not passive:
                break
    return x, False


def nnls_gram(q: np.ndarray, c: np.ndarray, max_iter: int | None = None) -> tuple[np.ndarray, bool]:
    """Lawson & Hanson on the Gramian: ``argmin_{x >= 0} ½ xᵀQx + cᵀx`` (``Q`` PSD, T x T).

    The fast path for small dense problems (UPGrad's projections): each inner step solves
    ``Q_FF z = -c_F`` on the passive set F with one LU solve, with no least-squares SVD and
    no P-sized work. Expects ``Q`` equilibrated (unit diagonal) by the caller. Returns
    ``(x, ok)``; ``ok`` is False when a solve was singular or the result fails the KKT
    conditions ``x >= 0, Qx + c >= 0, x ∘ (Qx + c) = 0`` to a relative 1e-9 — callers then
    use the least-squares solver :func:`nnls` on a square-root factor instead.
    """
    n = len(c)
    x = np.zeros(n)
    passive = np.zeros(n, dtype=bool)
    scale = np.abs(q).sum(axis=1) + np.abs(c)  # bounds the rounding of (Qx + c)_j, x <= ~1
    max_iter = max_iter or 3 * n + 10
    for _ in range(max_iter):
        neg_grad = -(q @ x + c)
        neg_grad[passive] = -np.inf
        j = int(np.argmax(neg_grad))
        if neg_grad[j] <= 1e-12 * scale[j]:
            break
        passive[j] = True
        for _ in range(n + 1):
            idx = np.flatnonzero(passive)
            try:
                z = np.linalg.solve(q[np.ix_(idx, idx)], -c[idx])
            except np.linalg.LinAlgError:
                return x, False
            if not np.all(np.isfinite(z)):
                return x, False
            if np.all(z > 0):
                x = np.zeros(n)
                x[idx] = z
                break
            xp = x[idx]
            neg = z <= 0
            theta = float(np.min(xp[neg] / (xp[neg] - z[neg])))
            xp = xp + theta * (z - xp)
            drop = xp <= 1e-15 * max(1.0, float(np.max(np.abs(xp))))
            drop[int(np.argmin(np.where(neg, xp, np.inf)))] = True
            x = np.zeros(n)
            keep = idx[~drop]
            x[keep] = xp[~drop]
            passive[idx[drop]] = False
            if not passive.any():
                break
    else:
        return x, False
    grad = q @ x + c
    tol = 1e-9 * (np.abs(q) @ x + np.abs(c) + 1e-300)
    ok = bool(np.all(x >= 0) and np.all(grad >= -tol) and np.all(np.abs(x * grad) <= tol * (x + 1)))
    return x, ok


def simplex_qp_on_support(
    q: np.ndarray, p: np.ndarray, support: list[int]
) -> tuple[np.ndarray, np.ndarray]:
    """The simplex-QP solution on a fixed support, as an affine function of ``p``'s scale.

    On support F the KKT system ``Q_FF w_F + s p_F = λ 1, 1ᵀw_F = 1`` is linear; returns
    ``(a, c)`` such that its solution is ``w_F = a + s c``.
    """
    k = len(support)
    kkt = np.zeros((k + 1, k + 1))
    kkt[:k, :k] = q[np.ix_(support, support)]
    kkt[:k, k] = 1.0
    kkt[k, :k] = 1.0
    a = solve_sym(kkt, np.concatenate([np.zeros(k), [1.0]]))[:k]
    c = solve_sym(kkt, np.concatenate([-p[support], [0.0]]))[:k]
    return a, c
