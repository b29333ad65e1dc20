"""Linear algebra shared by the T-space solvers (float64 NumPy)."""

from __future__ import annotations

import numpy as np

TOL = 1e-11  # relative KKT tolerance (rounding is ~1e-16 relative)


def symmetric(q: np.ndarray) -> np.ndarray:
    q = np.asarray(q, dtype=np.float64)
    if not np.all(np.isfinite(q)):
        raise FloatingPointError("non-finite Gramian")
    return 0.5 * (q + q.T)


def solve_sym(k: np.ndarray, rhs: np.ndarray) -> np.ndarray:
    """Solve a small symmetric (possibly singular) system; least squares if needed."""
    try:
        x = np.linalg.solve(k, rhs)
        # The residual test np.allclose would do, without its per-call overhead.
        if np.all(np.abs(k @ x - rhs) <= 1e-12 + 1e-9 * np.abs(rhs)):
            return x
    except np.linalg.LinAlgError:
        pass
    return np.linalg.lstsq(k, rhs, rcond=1e-13)[0]
