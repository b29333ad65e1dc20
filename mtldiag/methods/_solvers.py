"""Small exact solvers in T-space (T x T Gramians), float64 NumPy.

The Gramian-based methods reduce to tiny convex problems:

* :func:`simplex_qp` — ``min_w ½ wᵀQw + pᵀw`` over the probability simplex (MGDA's min-norm
  point, CAGrad's inner problem);
* :func:`nonneg_qp` — the same with only ``w >= 0`` (UPGrad's projection onto a dual cone).

Both use a primal active-set method (Nocedal & Wright, *Numerical Optimization*, Alg. 16.3):
on each working set the equality-constrained problem is solved exactly (a (k+1) x (k+1)
linear system), so the answer is exact up to rounding, unlike Frank-Wolfe with a loose stop.
``Q`` may be singular (identical or dependent gradients): the sub-systems are then solved in
the least-squares sense, which is exact whenever ``p`` lies in the range of ``Q`` — true for
every use here (``p = Q r``). If the active set does not settle within its iteration budget
(T > ``ACTIVE_SET_MAX_T`` or pathological rounding), an accelerated projected-gradient
method with a tight stopping rule takes over from the best point found.

Numbers are rescaled by the largest diagonal entry of ``Q`` first, so tolerances are relative
and gradients from 1e-8 to 1e8 behave alike.
"""

from __future__ import annotations

import numpy as np

ACTIVE_SET_MAX_T = 64
ENUMERATE_MAX_T = 10
_TOL = 1e-11  # relative KKT tolerance (rounding is ~1e-16 relative)


def _solve_sym(k: np.ndarray, rhs: np.ndarray) -> np.ndarray:
    """Solve a small symmetric (possibly singular) system; least squares if needed."""
    try:
        x = np.linalg.solve(k, rhs)
        # The residual test np.allclose would do, without its per-call overhead.
        if np.all(np.abs(k @ x - rhs) <= 1e-12 + 1e-9 * np.abs(rhs)):
            return x
    except np.linalg.LinAlgError:
        pass
    return np.linalg.lstsq(k, rhs, rcond=1e-13)[0]


def project_simplex(y: np.ndarray) -> np.ndarray:
    """Euclidean projection onto ``{w >= 0, sum w = 1}`` (sort-based, exact)."""
    u = np.sort(y)[::-1]
    css = np.cumsum(u) - 1.0
    idx = np.arange(1, len(y) + 1)
    rho = np.nonzero(u - css / idx > 0)[0][-1]
    return np.maximum(y - css[rho] / (rho + 1.0), 0.0)


def _objective(q: np.ndarray, p: np.ndarray, w: np.ndarray) -> float:
    return float(0.5 * w @ q @ w + p @ w)


def _projected_gradient(
    q: np.ndarray, p: np.ndarray, w0: np.ndarray, simplex: bool, max_iter: int = 5000
) -> np.ndarray:
    """FISTA with restart (plain simplex ``sum w = 1`` or ``w >= 0``), tight stopping rule."""
    lip = max(float(np.linalg.eigvalsh(q)[-1]), 1e-300)
    proj = project_simplex if simplex else (lambda v: np.maximum(v, 0.0))
    w = proj(w0)
    y, t = w.copy(), 1.0
    f = _objective(q, p, w)
    for _ in range(max_iter):
        w_new = proj(y - (q @ y + p) / lip)
        f_new = _objective(q, p, w_new)
        if f_new > f:  # restart the momentum when it overshoots
            y, t = w.copy(), 1.0
            continue
        t_new = 0.5 * (1.0 + np.sqrt(1.0 + 4.0 * t * t))
        y = w_new + ((t - 1.0) / t_new) * (w_new - w)
        done = np.max(np.abs(w_new - w)) < 1e-15
        w, f, t = w_new, f_new, t_new
        if done:
            break
    return w


def _active_set(
    q: np.ndarray,
    p: np.ndarray,
    a: np.ndarray | None,
    free: list[int],
    w: np.ndarray,
    max_iter: int,
) -> tuple[np.ndarray, bool]:
    """Primal active set for ``min ½ wᵀQw + pᵀw, w >= 0`` (and ``aᵀw = 1`` if ``a`` is given).

    Starts from a feasible ``w`` whose support is ``free``; returns ``(w, converged)``.
    """
    n = len(p)
    for _ in range(max_iter):
        g = q @ w + p
        k = len(free)
        step = np.zeros(0)
        if k:
            qf = q[np.ix_(free, free)]
            if a is not None:
                kkt = np.zeros((k + 1, k + 1))
                kkt[:k, :k] = qf
                kkt[:k, k] = a[free]
                kkt[k, :k] = a[free]
                step = _solve_sym(kkt, np.concatenate([-g[free], [0.0]]))[:k]
            else:
                step = _solve_sym(qf, -g[free])
        # A negligible step, or one that rounding makes non-decreasing, means stationary.
        negligible = k == 0 or np.max(np.abs(step)) <= 1e-12 * max(1.0, float(np.max(w)))
        if not negligible:
            negligible = float(g[free] @ step) + 0.5 * float(step @ qf @ step) >= 0.0
        if negligible:
            lam = 0.0
            if a is not None and k:
                lam = float(g[free] @ a[free]) / float(a[free] @ a[free])
            others = [i for i in range(n) if i not in free]
            if not others:
                return w, True
            mu = g[others] - (lam * a[others] if a is not None else 0.0)
            # Rounding in (Qw)_j is about eps * (|Q| w)_j: a relative test stays exact when
            # the optimum is tiny (near-antipodal gradients) and never cycles on noise.
            scale = np.abs(q[others]) @ w + np.abs(p[others])
            if a is not None:
                scale = scale + abs(lam) * a[others]
            tol = _TOL * scale
            j = int(np.argmin(mu + tol))
            if mu[j] >= -tol[j]:
                return w, True
            free = free + [others[j]]
            continue
        wf = w[free]
        neg = step < 0.0
        alpha, block = 1.0, -1
        if np.any(neg):
            ratios = np.full(k, np.inf)
            ratios[neg] = -wf[neg] / step[neg]
            b = int(np.argmin(ratios))
            if ratios[b] < 1.0:
                alpha, block = float(max(ratios[b], 0.0)), b
        w = w.copy()
        w[free] = wf + alpha * step
        if block >= 0:
            w[free[block]] = 0.0
            free = [f for i, f in enumerate(free) if i != block]
        w = np.maximum(w, 0.0)
        if a is not None:
            w = w / float(a @ w)
    return w, False


def _symmetric(q: np.ndarray) -> np.ndarray:
    q = np.asarray(q, dtype=np.float64)
    if not np.all(np.isfinite(q)):
        raise FloatingPointError("non-finite Gramian")
    return 0.5 * (q + q.T)


def simplex_qp(
    q: np.ndarray, p: np.ndarray | None = None, warm: np.ndarray | None = None
) -> np.ndarray:
    """``argmin ½ wᵀQw + pᵀw`` over the simplex (``Q`` PSD, ``p`` in range(Q) or zero).

    The problem is first equilibrated: with ``n_i = sqrt(Q_ii)`` and ``w = v / n``, ``Q``
    becomes a correlation matrix (unit diagonal) and the constraint ``sum_i v_i / n_i = 1``,
    so tasks whose gradients differ by orders of magnitude are solved to full relative
    precision. A zero row makes its vertex optimal when ``p = 0``.
    ``warm``: a feasible starting point (its support is the first working set).
    Ties (non-unique minimisers) resolve to some minimiser; ``Q w`` is unique.
    """
    q = _symmetric(q)
    n = len(q)
    p = np.zeros(n) if p is None else np.asarray(p, dtype=np.float64)
    if n == 1:
        return np.ones(1)
    if n == 2:
        return _segment_qp(q, p)
    diag = np.clip(np.diag(q), 0.0, None)
    top = float(diag.max())
    if top == 0.0:
        return np.full(n, 1.0 / n) if not np.any(p) else np.eye(n)[int(np.argmin(p))]
    zero = diag <= 1e-30 * top
    if np.any(zero) and not np.any(p):
        return np.eye(n)[int(np.argmax(zero))]  # a zero gradient: d = 0 is optimal
    norms = np.sqrt(np.where(zero, top, diag))
    qs = q / np.outer(norms, norms)
    ps = p / norms
    a = 1.0 / norms
    a_top = float(a.max())
    # Constraint a v = 1 with max(a) = 1: v is scaled by a_top, so Q and p follow.
    a, qs, ps = a / a_top, qs / a_top**2, ps / a_top
    if warm is not None and np.all(np.asarray(warm) >= 0) and np.sum(warm) > 0:
        v = np.asarray(warm, dtype=np.float64) * norms
        v = v / float(a @ v)
        free = [i for i in range(n) if v[i] > 0]
    else:
        vert = 0.5 * np.diag(qs) / a**2 + ps / a
        j = int(np.argmin(vert))
        v = np.zeros(n)
        v[j] = 1.0 / a[j]
        free = [j]
    ok = False
    if n <= ACTIVE_SET_MAX_T:
        v, ok = _active_set(qs, ps, a, free, v, 20 * n + 50)
    w = v / norms
    w = w / w.sum()
    if ok:
        return w
    if not np.any(p):
        # Rounding made the working sets cycle (G's condition number near 1/eps): Wolfe's
        # min-norm-point algorithm on a square-root factor works at sqrt of that condition.
        pts = factor(q)
        w2, ok2 = min_norm_point(pts)
        if ok2 or np.linalg.norm(w2 @ pts) < np.linalg.norm(w @ pts):
            w = w2
        if ok2:
            return w
        if n <= ENUMERATE_MAX_T:
            return _enumerate_min_norm(pts)
    return _projected_gradient(q / top, p / top, w, simplex=True)


def _segment_qp(q: np.ndarray, p: np.ndarray) -> np.ndarray:
    """T = 2 in closed form: ``w = (t, 1 - t)`` with ``t`` the clipped root of ``f'(t) = 0``.

    ``f(t) = ½ wᵀQw + pᵀw`` has curvature ``a = Q11 - 2 Q12 + Q22 = ||g1 - g2||² >= 0``; when
    it vanishes (identical gradients) ``f`` is linear and an end point is optimal.
    """
    a = q[0, 0] - 2.0 * q[0, 1] + q[1, 1]
    b = q[0, 1] - q[1, 1] + p[0] - p[1]  # f'(t) = a t + b
    if a > 1e-14 * (abs(q[0, 0]) + abs(q[1, 1])):
        t = min(max(-b / a, 0.0), 1.0)
    else:
        t = 1.0 if b < 0 else (0.0 if b > 0 else 0.5)
    return np.array([t, 1.0 - t])


def _enumerate_min_norm(pts: np.ndarray) -> np.ndarray:
    """Last resort for small T: the best affine minimiser over every support (2^T - 1)."""
    import itertools

    n = len(pts)
    best, best_w = np.inf, np.full(n, 1.0 / n)
    for r in range(1, n + 1):
        for sub in itertools.combinations(range(n), r):
            alpha = _affine_minimizer(pts, list(sub))
            if np.any(alpha < -1e-12):
                continue
            w = np.zeros(n)
            w[list(sub)] = np.maximum(alpha, 0.0)
            w /= w.sum()
            val = float(np.linalg.norm(w @ pts))
            if val < best:
                best, best_w = val, w
    return best_w


def nonneg_qp(q: np.ndarray, p: np.ndarray, with_status: bool = False):
    """``argmin ½ xᵀQx + pᵀx`` over ``x >= 0`` (``Q`` PSD, ``p`` in range(Q)).

    With ``with_status``, returns ``(x, converged)`` (False: the active set cycled and the
    projected-gradient fallback was used).
    """
    q = _symmetric(q)
    p = np.asarray(p, dtype=np.float64)
    n = len(q)
    diag = np.clip(np.diag(q), 0.0, None)
    top = float(diag.max()) if n else 0.0
    if top == 0.0:
        return (np.zeros(n), True) if with_status else np.zeros(n)
    zero = diag <= 1e-30 * top
    norms = np.sqrt(np.where(zero, top, diag))
    qs = q / np.outer(norms, norms)
    ps = p / norms
    ok = False
    v = np.zeros(n)
    if n <= ACTIVE_SET_MAX_T:
        v, ok = _active_set(qs, ps, None, [], v, 20 * n + 50)
    if not ok and not with_status:
        v = _projected_gradient(qs, ps, v, simplex=False)
    x = np.where(zero, 0.0, v / norms)
    return (x, ok) if with_status else x


def factor(gramian: np.ndarray) -> np.ndarray:
    """Points ``P`` (T x T) with ``P Pᵀ = G``: row i stands for task i's gradient.

    Working with these points instead of ``G`` (least squares on ``P`` rather than normal
    equations on ``G``) keeps the square root of ``G``'s condition number.
    """
    g = _symmetric(gramian)
    lam, vec = np.linalg.eigh(g)
    return vec * np.sqrt(np.clip(lam, 0.0, None))


def _affine_minimizer(pts: np.ndarray, idx: list[int]) -> np.ndarray:
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
        tol = _TOL * (np.sqrt(norms2) * np.sqrt(xx) + xx)
        cand = [i for i in range(n) if i not in corral]
        if not cand or xx == 0.0:
            break
        k = min(cand, key=lambda i: dots[i] + tol[i])
        if dots[k] >= xx - tol[k]:
            break
        corral.append(k)
        lam = np.append(lam, 0.0)
        for _ in range(n + 1):  # minor cycles
            alpha = _affine_minimizer(pts, corral)
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
        tol = _TOL * colnorm * (float(np.linalg.norm(r)) + bnorm) + 1e-300
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


def nnls_gram(
    q: np.ndarray, c: np.ndarray, max_iter: int | None = None
) -> tuple[np.ndarray, bool]:
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
    a = _solve_sym(kkt, np.concatenate([np.zeros(k), [1.0]]))[:k]
    c = _solve_sym(kkt, np.concatenate([-p[support], [0.0]]))[:k]
    return a, c
