"""A small real data set: scikit-learn's bundled 8x8 digits (1,797 images, no download).

Three tasks on one shared MLP trunk: ``digit`` (10-class cross-entropy), ``parity`` (odd or
even, 2-class cross-entropy) and ``value`` (the digit as a number in [0, 1], MSE) — the
classification and the regression read the same label in ways that pull the trunk apart.
Needs the ``digits`` extra: ``pip install 'mtldiag[digits]'``.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.data import DataLoader

from mtldiag.errors import UserCodeError


class DigitsMTL(nn.Module):
    def __init__(self, hidden: int = 128, depth: int = 3) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for k in range(depth):
            layers += [nn.Linear(64 if k == 0 else hidden, hidden), nn.ReLU()]
        self.trunk = nn.Sequential(*layers)
        self.digit = nn.Linear(hidden, 10)
        self.parity = nn.Linear(hidden, 2)
        self.value = nn.Linear(hidden, 1)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        z = self.trunk(x)
        return {"digit": self.digit(z), "parity": self.parity(z), "value": self.value(z)}


def build_model(hidden: int = 128, depth: int = 3) -> nn.Module:
    return DigitsMTL(hidden, depth)


class _Digits(torch.utils.data.Dataset):
    def __init__(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self.x, self.y = x, y

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        y = self.y[i]
        return self.x[i], {"digit": y, "parity": y % 2, "value": (y.float() / 9.0).reshape(1)}


def _arrays(split: str, val_fraction: float) -> tuple[torch.Tensor, torch.Tensor]:
    try:
        from sklearn.datasets import load_digits
    except ImportError as exc:
        raise UserCodeError(
            "the digits example needs scikit-learn.",
            hint="pip install 'mtldiag[digits]'  (or pip install scikit-learn)",
        ) from exc
    data = load_digits()
    x = torch.tensor(data.data, dtype=torch.float32) / 16.0
    y = torch.tensor(data.target, dtype=torch.long)
    g = torch.Generator().manual_seed(1234)  # a fixed split, whatever the run's seed
    order = torch.randperm(len(x), generator=g)
    n_val = int(len(x) * val_fraction)
    idx = order[:n_val] if split == "val" else order[n_val:]
    return x[idx], y[idx]


def build_loader(
    batch_size: int = 64, split: str = "train", val_fraction: float = 0.2, shuffle: bool = True
) -> DataLoader:
    x, y = _arrays(split, val_fraction)
    return DataLoader(_Digits(x, y), batch_size=batch_size, shuffle=shuffle and split == "train")
