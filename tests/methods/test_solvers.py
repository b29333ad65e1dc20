"""The exact T-space solvers (methods/_utils) against closed forms, KKT conditions and SciPy."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy.optimize import nnls as scipy_nnls

from mtldiag.methods._utils.linalg import solve_sym, symmetric
from mtldiag.methods._utils.lsq import factor, min_norm_point, nnls, nnls_gram
from mtldiag.methods._utils.qp import nonneg_qp, project_simplex, simplex_qp


def gram(t: int, p: int, seed: int, scales: np.ndarray | None = None) -> np.ndarray:
    rng = np.random.default_rng(seed)
    j = rng.standard_normal((t, p))
    if scales is not None:
        j = j * scales[:, None]
    return j @ j.T


def brute_force_simplex_min(q: np.ndarray) -> float:
    """min ½ wᵀQw over the simplex by enumerating supports (exact for small T)."""
    n = len(q)
    best = np.inf
    for r in range(1, n + 1):
        for sub in itertools.combinations(range(n), r):
            idx = list(sub)
            k = np.zeros((r + 1, r + 1))
            k[:r, :r] = q[np.ix_(idx, idx)]
            k[:r, r] = 1.0
            k[r, :r] = 1.0
            sol = np.linalg.lstsq(k, np.r_[np.zeros(r), 1.0], rcond=None)[0][:r]
            if np.all(sol >= -1e-12):
                w = np.zeros(n)
                w[idx] = sol
                best = min(best, 0.5 * w @ q @ w)
    return best


def test_project_simplex_closed_form():
    # Projection of (0.5, 0.5, 2) onto the simplex: subtract tau = 1 from the largest only.
    assert np.allclose(project_simplex(np.array([0.5, 0.5, 2.0])), [0.0, 0.0, 1.0])
    # A point already on the simplex is its own projection.
    y = np.array([0.2, 0.3, 0.5])
    assert np.allclose(project_simplex(y), y)
    # Equal shift: (1, 1) -> (0.5, 0.5).
    assert np.allclose(project_simplex(np.array([1.0, 1.0])), [0.5, 0.5])


@pytest.mark.parametrize("seed", range(6))
def test_simplex_qp_meets_kkt_and_matches_enumeration(seed):
    q = gram(5, 3, seed)  # rank 3 < T = 5: a singular Q
    w = simplex_qp(q)
    assert w.min() >= -1e-12 and abs(w.sum() - 1) < 1e-12
    grad = q @ w
    lam = float(w @ grad)  # the multiplier of sum w = 1
    assert np.all(grad >= lam - 1e-9 * np.abs(q).max())  # no vertex descends further
    assert 0.5 * w @ q @ w == pytest.approx(brute_force_simplex_min(q), rel=1e-9, abs=1e-12)


def test_simplex_qp_two_tasks_closed_form():
    # Two gradients g1 = (1, 0), g2 = (0, 2): the min-norm point of their segment is at
    # w1 = |g2|^2 / |g1 - g2|^2 = 4 / 5.
    q = np.array([[1.0, 0.0], [0.0, 4.0]])
    assert np.allclose(simplex_qp(q), [0.8, 0.2])


def test_simplex_qp_is_scale_free_across_orders_of_magnitude():
    scales = np.array([1e-6, 1.0, 1e6])
    q = gram(3, 8, 3, scales)
    w = simplex_qp(q)
    d = w @ factor(q)  # the min-norm point itself
    # KKT relative to each gradient's scale: the smallest gradient sets the answer here.
    grad = q @ w
    lam = float(w @ grad)
    assert np.all(grad >= lam - 1e-9 * np.sqrt(np.diag(q)).max() * np.linalg.norm(d))


@pytest.mark.parametrize("seed", range(5))
def test_nonneg_qp_kkt(seed):
    q = gram(6, 4, seed)
    r = np.random.default_rng(seed + 100).standard_normal(6)
    p = -q @ r  # p in range(Q)
    x = nonneg_qp(q, p)
    g = q @ x + p
    tol = 1e-8 * (np.abs(q).max() * (1 + np.abs(x).max()) + np.abs(p).max())
    assert x.min() >= 0
    assert g.min() >= -tol
    assert abs(float(x @ g)) <= tol * (1 + np.abs(x).sum())


@pytest.mark.parametrize("seed", range(5))
def test_nnls_matches_scipy(seed):
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((9, 5))
    b = rng.standard_normal(9)
    x, ok = nnls(a, b)
    ref, _ = scipy_nnls(a, b)
    assert ok and np.allclose(x, ref, atol=1e-10)


@pytest.mark.parametrize("seed", range(5))
def test_nnls_gram_equals_nnls_on_the_normal_equations(seed):
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((12, 5))
    b = rng.standard_normal(12)
    q, c = a.T @ a, -a.T @ b
    n = np.sqrt(np.diag(q))
    x, ok = nnls_gram(q / np.outer(n, n), c / n)  # the caller equilibrates
    ref, _ = scipy_nnls(a, b)
    assert ok and np.allclose(x / n, ref, atol=1e-9)


@pytest.mark.parametrize("seed", range(4))
def test_min_norm_point_agrees_with_simplex_qp(seed):
    q = gram(4, 6, seed)
    pts = factor(q)
    w, ok = min_norm_point(pts)
    assert ok
    assert np.linalg.norm(w @ pts) == pytest.approx(np.sqrt(simplex_qp(q) @ q @ simplex_qp(q)))


def test_factor_reproduces_the_gramian_even_when_singular():
    q = gram(5, 2, 7)
    pts = factor(q)
    assert np.allclose(pts @ pts.T, q, atol=1e-10 * np.abs(q).max())


def test_linalg_helpers():
    with pytest.raises(FloatingPointError):
        symmetric(np.array([[1.0, np.nan], [0.0, 1.0]]))
    k = np.array([[1.0, 1.0], [1.0, 1.0]])  # singular: least squares takes over
    x = solve_sym(k, np.array([2.0, 2.0]))
    assert np.allclose(k @ x, [2.0, 2.0]) and np.allclose(x, [1.0, 1.0])
