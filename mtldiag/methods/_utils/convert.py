"""Helpers shared by the Gramian methods: NumPy float64 in, torch out."""

from __future__ import annotations

import numpy as np
import torch

REDUCTION_HELP = "sum (EW scale: weights sum to T) | mean (the paper's: weights sum to 1)"


def to_numpy(gramian: torch.Tensor) -> np.ndarray:
    """The Gramian as a symmetric float64 NumPy array (CPU)."""
    g = gramian.detach().to("cpu", torch.float64).numpy()
    return 0.5 * (g + g.T)


def to_torch(w: np.ndarray, like: torch.Tensor) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(w, dtype=np.float64)).to(like.device)


def finite_or_zero(w: np.ndarray) -> np.ndarray:
    return w if np.all(np.isfinite(w)) else np.zeros_like(w)
