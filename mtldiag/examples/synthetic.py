"""A multi-task problem whose gradient conflict is known in closed form.

Model: a shared linear encoder ``W`` (width x d_in, no bias) and one linear head per task
(out_dim x width). Each task regresses ``Y_t = X Theta_t^T`` with MSE.

At the first step the encoder starts at zero and every head at the same matrix ``Q`` with
orthonormal rows, and every batch is whitened (``X^T X / n = I``). Then the encoder gradient
of task t is ``-(2 / (n out)) Q^T Y_t^T X = -(2 / out) Q^T Theta_t``, so

* ``cos(g_a, g_b) = <Theta_a, Theta_b> / (|Theta_a| |Theta_b|)``, which is set to ``cosine``;
* ``|g_a| / |g_b| = |Theta_a| / |Theta_b| = scale``, and the initial loss ratio is
  ``scale^2`` (the default ``scale = 10`` makes task ``a``'s loss 100x task ``b``'s);
* task ``c`` (when ``n_tasks = 3``) is orthogonal to both: cosine 0.

The encoder is narrower than the tasks together need, so the conflict persists as training
goes on. With ``noise = 0`` the numbers above hold exactly on the first step.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

TASK_NAMES = ("a", "b", "c")


class SyntheticMTL(nn.Module):
    """Shared linear encoder + one linear head per task; returns ``{task: prediction}``."""

    def __init__(self, d_in: int = 16, width: int = 8, out_dim: int = 4, n_tasks: int = 3) -> None:
        super().__init__()
        if out_dim > width:
            raise ValueError(f"out_dim ({out_dim}) must be <= width ({width}).")
        self.tasks = TASK_NAMES[:n_tasks]
        self.encoder = nn.Linear(d_in, width, bias=False)
        self.heads = nn.ModuleDict({t: nn.Linear(width, out_dim, bias=False) for t in self.tasks})
        with torch.no_grad():
            self.encoder.weight.zero_()
            q = torch.linalg.qr(torch.randn(width, out_dim)).Q.T  # (out_dim, width), Q Q^T = I
            for head in self.heads.values():
                head.weight.copy_(q)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        z = self.encoder(x)  # (B, width)
        return {t: head(z) for t, head in self.heads.items()}


def task_maps(
    d_in: int, out_dim: int, cosine: float, scale: float, n_tasks: int, seed: int
) -> dict[str, torch.Tensor]:
    """``Theta_t`` (out_dim x d_in) with the chosen cosine between a and b, c orthogonal."""
    if not -1.0 <= cosine <= 1.0:
        raise ValueError(f"cosine must be in [-1, 1], not {cosine}.")
    g = torch.Generator().manual_seed(10_000 + seed)
    basis = torch.linalg.qr(torch.randn(out_dim * d_in, 3, generator=g, dtype=torch.float64)).Q
    u1, u2, u3 = (basis[:, k].reshape(out_dim, d_in) for k in range(3))
    norm = math.sqrt(out_dim)  # keeps per-element targets of order 1
    theta = {
        "a": scale * norm * u1,
        "b": norm * (cosine * u1 + math.sqrt(max(0.0, 1 - cosine**2)) * u2),
        "c": norm * u3,
    }
    return {t: theta[t].float() for t in TASK_NAMES[:n_tasks]}


class WhitenedBatches(Dataset):
    """Item ``i`` is a whole batch: inputs with ``X^T X / n = I`` and the tasks' targets."""

    def __init__(
        self,
        n_batches: int,
        batch_size: int,
        d_in: int,
        theta: dict[str, torch.Tensor],
        noise: float,
        seed: int,
    ) -> None:
        if batch_size < d_in:
            raise ValueError(f"batch_size ({batch_size}) must be >= d_in ({d_in}) to whiten.")
        g = torch.Generator().manual_seed(seed)
        self.items = []
        for _ in range(n_batches):
            q = torch.linalg.qr(torch.randn(batch_size, d_in, generator=g, dtype=torch.float64)).Q
            x = (q * math.sqrt(batch_size)).float()
            targets = {}
            for t, th in theta.items():
                y = x @ th.T
                if noise > 0:
                    y = y + noise * torch.randn(y.shape, generator=g)
                targets[t] = y
            self.items.append((x, targets))

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        return self.items[i]


def build_model(d_in: int = 16, width: int = 8, out_dim: int = 4, n_tasks: int = 3) -> nn.Module:
    return SyntheticMTL(d_in, width, out_dim, n_tasks)


def build_loader(
    batch_size: int = 64,
    n_batches: int = 32,
    d_in: int = 16,
    out_dim: int = 4,
    n_tasks: int = 3,
    cosine: float = -0.5,
    scale: float = 10.0,
    noise: float = 0.05,
    seed: int = 0,
    shuffle: bool = True,
) -> DataLoader:
    """Batches of the synthetic problem (each item is already a whole, whitened batch)."""
    theta = task_maps(d_in, out_dim, cosine, scale, n_tasks, seed)
    data = WhitenedBatches(n_batches, batch_size, d_in, theta, noise, seed)
    return DataLoader(data, batch_size=None, shuffle=shuffle)
