"""Helpers shared by the Gramian methods: NumPy float64 in, torch out.

Precision: every T x T solve runs in float64, but a Gramian is only as good as the numbers it
was formed from. One formed from float32 gradients (directly, or per layer and summed in
float64 as the trainer does) carries rounding eigenvalues of a few ``eps32 · λmax`` where
the true Gramian has a zero one (linearly dependent tasks, T > P). Rank decisions (the
pseudo-inverses of IMTL-G, Aligned-MTL and ConFIG, CAGrad's stationarity test) must treat
those as zero: they cut at :func:`rank_floor` of the precision.
"""

from __future__ import annotations

import numpy as np
import torch

REDUCTION_HELP = "sum (EW scale: weights sum to T) | mean (the paper's: weights sum to 1)"
_EPS64 = float(np.finfo(np.float64).eps)
# A task gradient with squared norm below ZERO_ROW of the largest (norm ratio 1e-12) is a
# zero gradient: what a cancellation that should give 0 leaves in floating point. Treating
# it as a real (tiny) constraint would make the cone methods jump with the row's rounding.
ZERO_ROW = 1e-24


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
    """The Gramian as a symmetric float64 NumPy array (CPU).

    ``precision`` (the dtype the gradients behind it were in) is accepted for symmetry with
    the methods' rank decisions but changes nothing here: the QP-based methods need G as it
    is (zeroing its rounding eigenvalues would make their weights non-unique, and a solver
    could then return huge null-space components that the float32 J does not cancel);
    the pseudo-inverse methods cut at :func:`rank_floor` themselves.
    """
    del precision
    g = gramian.detach().to("cpu", torch.float64).numpy()
    return 0.5 * (g + g.T)


def to_torch(w: np.ndarray, like: torch.Tensor) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(w, dtype=np.float64)).to(like.device)


def finite_or_zero(w: np.ndarray) -> np.ndarray:
    return w if np.all(np.isfinite(w)) else np.zeros_like(w)
