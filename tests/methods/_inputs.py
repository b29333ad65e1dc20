"""Shared Jacobians for the method tests (float64)."""

from __future__ import annotations

import torch


def random_jacobian(t: int, p: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(t, p, generator=g, dtype=torch.float64)


def degenerate() -> dict[str, torch.Tensor]:
    base = random_jacobian(3, 6, 1)
    cases = {
        "zero_row": torch.cat([base[:2], torch.zeros(1, 6, dtype=torch.float64)]),
        "all_zero": torch.zeros(3, 6, dtype=torch.float64),
        "identical": base[:1].repeat(3, 1),
        "rank_deficient": torch.stack([base[0], base[1], base[0] + 2 * base[1]]),
        "antipodal": torch.stack([base[0], -base[0], base[1]]),
        "more_tasks_than_params": random_jacobian(5, 2, 3),
    }
    for s in (1e-8, 1e8):
        cases[f"scale_{s:g}"] = base * s
    cases["mixed_scales"] = base * torch.tensor([[1e-4], [1.0], [1e4]], dtype=torch.float64)
    return cases
