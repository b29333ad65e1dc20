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

from mtldiag.methods._utils.linalg import TOL, solve_sym, symmetric
from mtldiag.methods._utils.lsq import affine_minimizer, factor, min_norm_point

ACTIVE_SET_MAX_T = 64
ENUMERATE_MAX_T = 10


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
                step = solve_sym(kkt, np.concatenate([-g[free], [0.0]]))[:k]
            else:
                step = solve_sym(qf, -g[free])
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
            tol = TOL * scale
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
    q = symmetric(q)
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
            alpha = affine_minimizer(pts, list(sub))
            if np.any(alpha < -1e-12):
                continue
            w = np.zeros(n)
            w[list(sub)] = np.maximum(alpha, 0.0)
            w /= w.sum()
            val = float(np.linalg.norm(w @ pts))
            if val < best:
                best, best_w = val, w
    return best_w


def nonneg_qp(q: np.ndarray, p: np.ndarray) -> np.ndarray:
    """``argmin ½ xᵀQx + pᵀx`` over ``x >= 0`` (``Q`` PSD, ``p`` in range(Q))."""
    q = symmetric(q)
    p = np.asarray(p, dtype=np.float64)
    n = len(q)
    diag = np.clip(np.diag(q), 0.0, None)
    top = float(diag.max()) if n else 0.0
    if top == 0.0:
        return np.zeros(n)
    zero = diag <= 1e-30 * top
    norms = np.sqrt(np.where(zero, top, diag))
    qs = q / np.outer(norms, norms)
    ps = p / norms
    ok = False
    v = np.zeros(n)
    if n <= ACTIVE_SET_MAX_T:
        v, ok = _active_set(qs, ps, None, [], v, 20 * n + 50)
    if not ok:
        v = _projected_gradient(qs, ps, v, simplex=False)
    x = np.where(zero, 0.0, v / norms)
    return x
