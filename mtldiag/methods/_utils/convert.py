"""Helpers shared by the Gramian methods: NumPy float64 in, torch out.

Precision: every T x T solve runs in float64, but a Gramian is only as good as the numbers it
was formed from. One formed from float32 gradients (directly, or per layer and summed in
float64 as the trainer does) carries rounding eigenvalues of a few ``eps32 · λmax`` where
the true Gramian has a zero one (linearly dependent tasks, T > P). Rank decisions must treat
those as zero: :func:`to_numpy` zeroes every eigenvalue below :func:`rank_floor` when the
precision is coarser than float64.
"""

from __future__ import annotations

import numpy as np
import torch

REDUCTION_HELP = "sum (EW scale: weights sum to T) | mean (the paper's: weights sum to 1)"
_EPS64 = float(np.finfo(np.float64).eps)


def rank_floor(precision: torch.dtype | None, n: int) -> float:
    """Eigenvalues below ``rank_floor · λmax`` are rounding for a Gramian of that precision.

    ``10 · T · eps(precision)`` for float32 / float16 / bfloat16; 0 for float64 (the methods
    keep their own float64 cut-offs then).
    """
    if precision is None or not precision.is_floating_point:
        return 0.0
    eps = float(torch.finfo(precision).eps)
    return 0.0 if eps <= _EPS64 else 10.0 * max(n, 1) * eps


def to_numpy(gramian: torch.Tensor, precision: torch.dtype | None = None) -> np.ndarray:
    """The Gramian as a symmetric float64 NumPy array (CPU), cleaned to its precision.

    ``precision``: the dtype the gradients behind ``gramian`` were in (default: the Gramian's
    own dtype). Coarser than float64: eigenvalues below :func:`rank_floor` (and negative ones)
    are set to zero, so dependent task gradients stay exactly dependent.
    """
    g = gramian.detach().to("cpu", torch.float64).numpy()
    g = 0.5 * (g + g.T)
    floor = rank_floor(precision if precision is not None else gramian.dtype, len(g))
    if floor > 0.0 and len(g) and np.all(np.isfinite(g)):
        lam, vec = np.linalg.eigh(g)
        top = max(float(lam[-1]), 0.0)
        if np.any(lam < floor * top):
            lam = np.where(lam < floor * top, 0.0, lam)
            g = (vec * lam) @ vec.T
            g = 0.5 * (g + g.T)
    return g


def to_torch(w: np.ndarray, like: torch.Tensor) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(w, dtype=np.float64)).to(like.device)


def finite_or_zero(w: np.ndarray) -> np.ndarray:
    return w if np.all(np.isfinite(w)) else np.zeros_like(w)
