"""Reusable property checks for aggregators, over the kinds of inputs TorchJD's suite uses.

The properties (Quinton & Rey 2024, §2; TorchJD's ``tests/unit/aggregation``), for a method
``A`` mapping a Jacobian ``J`` (T x P) to a direction ``d``:

* non-conflicting: ``J A(J) >= 0`` (no task's loss goes up to first order);
* permutation invariance: permuting the rows of ``J`` does not change ``A(J)``;
* linearity under scaling: ``A(diag(a c1 + b c2) J) = a A(diag(c1) J) + b A(diag(c2) J)``
  for non-negative ``c1, c2, a, b``;
* strong stationarity: ``A(J) = 0`` only if some ``w > 0`` has ``wᵀJ = 0`` (tested by the
  contraposition on matrices that are not strongly stationary).

The input kinds, all with a prescribed rank: random (any rank up to min(T, P), including
rank-deficient ones), zero, strongly stationary (``vᵀJ = 0`` for some ``v > 0``), strictly
weakly stationary (only for ``v >= 0`` with zeros) and not weakly stationary, each in float64
and float32, and scaled copies from 1e-8 to 1e8. The samplers below are this project's own
(NumPy), seeded, and small enough that the whole suite stays fast.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

Aggregator = Callable[[torch.Tensor], torch.Tensor]


def _orthonormal(rng: np.random.Generator, dim: int) -> np.ndarray:
    q, r = np.linalg.qr(rng.normal(size=(dim, dim)))
    return q * np.sign(np.diag(r))  # Haar-distributed


def _complement(rng: np.random.Generator, basis: np.ndarray) -> np.ndarray:
    """A random orthonormal basis (columns) of the orthogonal complement of ``basis``'s span."""
    m, k = basis.shape
    x = rng.normal(size=(m, m - k))
    if k:
        x = x - basis @ (basis.T @ x)
        x = x - basis @ (basis.T @ x)  # twice is enough (Kahan)
    q, r = np.linalg.qr(x)
    return q * np.sign(np.diag(r))


def _with_left(rng: np.random.Generator, left: np.ndarray, n: int, rank: int) -> np.ndarray:
    """``left[:, :rank] S Vᵀ`` with random positive singular values and right vectors."""
    s = np.abs(rng.normal(size=rank)) + 0.1
    vt = _orthonormal(rng, n)
    return left[:, :rank] @ np.diag(s) @ vt[:rank]


def normal(rng: np.random.Generator, m: int, n: int, rank: int) -> np.ndarray:
    return _with_left(rng, _orthonormal(rng, m), n, rank)


def strong(rng: np.random.Generator, m: int, n: int, rank: int) -> np.ndarray:
    """Rows orthogonal to a positive ``v``: ``vᵀJ = 0`` with ``v > 0``."""
    v = np.abs(rng.normal(size=m)) + 0.1
    left = _complement(rng, (v / np.linalg.norm(v))[:, None])
    return _with_left(rng, left, n, rank)


def strictly_weak(rng: np.random.Generator, m: int, n: int, rank: int) -> np.ndarray:
    """``vᵀJ = 0`` for a non-negative ``v`` with zeros, and for no positive one.

    ``v`` and ``v'`` are non-negative with disjoint supports covering every row; J is
    orthogonal to ``v`` and has ``v'`` as a left singular vector with positive singular
    value, so any ``w > 0`` has ``wᵀJJᵀv' > 0``.
    """
    u = np.abs(rng.normal(size=m)) + 0.1
    perm = rng.permutation(m)
    split = int(rng.integers(1, m))
    v, vp = np.zeros(m), np.zeros(m)
    v[perm[:split]] = u[perm[:split]]
    vp[perm[split:]] = u[perm[split:]]
    u1 = np.stack([v / np.linalg.norm(v), vp / np.linalg.norm(vp)], axis=1)
    left = np.concatenate([u1[:, 1:], _complement(rng, u1)], axis=1)
    return _with_left(rng, left, n, rank)


def non_weak(rng: np.random.Generator, m: int, n: int, rank: int) -> np.ndarray:
    """A positive ``u`` is a left singular vector: no ``v >= 0, v != 0`` has ``vᵀJ = 0``."""
    u = np.abs(rng.normal(size=m)) + 0.1
    u1 = (u / np.linalg.norm(u))[:, None]
    left = np.concatenate([u1, _complement(rng, u1)], axis=1)
    return _with_left(rng, left, n, rank)


@dataclass(frozen=True)
class Case:
    name: str
    matrix: np.ndarray  # float64; tests cast to their dtype

    def tensor(self, dtype: torch.dtype) -> torch.Tensor:
        return torch.from_numpy(self.matrix).to(dtype)


_NORMAL_DIMS = [(1, 1, 1), (4, 3, 1), (4, 3, 2), (4, 3, 3), (9, 11, 5), (9, 11, 9), (5, 2, 2)]
_ZERO_DIMS = [(1, 1), (4, 3), (9, 11)]
_STATIONARY_DIMS = [(8, 10, 7), (8, 10, 3), (8, 10, 1), (8, 30, 1), (8, 30, 7)]
SCALES = (0.0, 1e-8, 1e-4, 1e4, 1e8)


def _build() -> dict[str, list[Case]]:
    rng = np.random.default_rng(2024)
    normal_ = [Case(f"normal{m}x{n}r{r}", normal(rng, m, n, r)) for m, n, r in _NORMAL_DIMS]
    zero = [Case(f"zero{m}x{n}", np.zeros((m, n))) for m, n in _ZERO_DIMS]
    strong_ = [Case(f"strong{m}x{n}r{r}", strong(rng, m, n, r)) for m, n, r in _STATIONARY_DIMS]
    weak = [Case(f"weak{m}x{n}r{r}", strictly_weak(rng, m, n, r)) for m, n, r in _STATIONARY_DIMS]
    nonweak = [Case(f"nonweak{m}x{n}r{r}", non_weak(rng, m, n, r)) for m, n, r in _STATIONARY_DIMS]
    scaled = [Case(f"{c.name}*{s:g}", s * c.matrix) for s in SCALES for c in normal_]
    return {
        "normal": normal_,
        "zero": zero,
        "strong": strong_,
        "weak": weak,
        "nonweak": nonweak,
        "scaled": scaled,
        "typical": zero + normal_ + strong_ + weak + nonweak,
        "non_strong": weak + nonweak,
    }


CASES = _build()


# ---- the properties ------------------------------------------------------------------


def _tol(dtype: torch.dtype, f64: float, f32: float) -> float:
    return f64 if dtype == torch.float64 else f32


def check_structure(agg: Aggregator, j: torch.Tensor) -> None:
    d = agg(j)
    assert d.shape == j.shape[1:], (d.shape, j.shape)
    assert torch.isfinite(d).all()


def _norm2(j: torch.Tensor) -> float:
    return float(torch.linalg.matrix_norm(j.double(), ord=2)) if j.numel() else 0.0


def check_non_conflicting(agg: Aggregator, j: torch.Tensor, rtol: float | None = None) -> None:
    """The negative part of ``J d`` is negligible next to ``J d`` (TorchJD's criterion), or
    at rounding level of ``||J||²`` (where the answer is 0, e.g. a stationary ``J``)."""
    rtol = rtol if rtol is not None else _tol(j.dtype, 1e-9, 4e-4)
    atol = _tol(j.dtype, 1e-12, 1e-5) * _norm2(j) ** 2 * j.shape[0]
    jd = j.double() @ agg(j).double()
    neg = float(jd.clamp_max(0.0).norm())
    scale = float(jd.norm())
    assert neg <= rtol * scale + atol, (neg, scale)


def check_permutation_invariant(
    agg: Aggregator, j: torch.Tensor, runs: int = 3, rtol: float | None = None
) -> None:
    rtol = rtol if rtol is not None else _tol(j.dtype, 1e-9, 1e-4)
    atol = _tol(j.dtype, 1e-12, 1e-5) * _norm2(j) * j.shape[0]
    gen = torch.Generator().manual_seed(0)
    d = agg(j).double()
    for _ in range(runs):
        perm = torch.randperm(j.shape[0], generator=gen)
        dp = agg(j[perm]).double()
        assert float((dp - d).norm()) <= rtol * float(d.norm()) + atol, (dp, d)


def check_linear_under_scaling(
    agg: Aggregator, j: torch.Tensor, runs: int = 3, rtol: float | None = None
) -> None:
    rtol = rtol if rtol is not None else _tol(j.dtype, 1e-8, 1e-4)
    gen = torch.Generator().manual_seed(1)
    jd = j.double()
    for _ in range(runs):
        c1 = torch.rand(j.shape[0], generator=gen, dtype=torch.float64)
        c2 = torch.rand(j.shape[0], generator=gen, dtype=torch.float64)
        a, b = torch.rand(2, generator=gen, dtype=torch.float64)

        def at(c):
            return agg((c[:, None] * jd).to(j.dtype)).double()

        x1, x2, x = at(c1), at(c2), at(a * c1 + b * c2)
        expected = a * x1 + b * x2
        scale = float(x1.norm() + x2.norm())
        atol = _tol(j.dtype, 1e-12, 1e-5) * _norm2(jd) * j.shape[0]
        assert float((x - expected).norm()) <= rtol * scale + atol, (x, expected)


def check_strongly_stationary(agg: Aggregator, j: torch.Tensor, rel: float = 1e-3) -> None:
    """On a matrix that is not strongly stationary the direction is not 0."""
    d = agg(j).double()
    assert float(d.norm()) > rel * float(torch.linalg.matrix_norm(j.double(), ord=2)), d
