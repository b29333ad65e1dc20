"""The standard MLP of the benchmarks: input 64, a 4 x 512 ReLU shared trunk, three heads
``Linear(512, 64) - ReLU - Linear(64, out)`` with out 10 (``cls``), 1 (``reg``), 5 (``aux``).

Data come from a fixed random teacher, so the tasks are learnable and related but not the same.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

HEADS = {"cls": 10, "reg": 1, "aux": 5}


class MultiHeadMLP(nn.Module):
    """Shared ReLU trunk and one small MLP head per task; returns ``{task: output}``."""

    def __init__(
        self,
        d_in: int = 64,
        width: int = 512,
        depth: int = 4,
        head_width: int = 64,
        heads: dict[str, int] | None = None,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for k in range(depth):
            layers += [nn.Linear(d_in if k == 0 else width, width), nn.ReLU()]
        self.trunk = nn.Sequential(*layers)
        self.heads = nn.ModuleDict(
            {
                t: nn.Sequential(nn.Linear(width, head_width), nn.ReLU(), nn.Linear(head_width, o))
                for t, o in (heads or HEADS).items()
            }
        )

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        z = self.trunk(x)  # (B, width)
        return {t: h(z) for t, h in self.heads.items()}


def build_model(
    d_in: int = 64, width: int = 512, depth: int = 4, head_width: int = 64
) -> nn.Module:
    return MultiHeadMLP(d_in, width, depth, head_width)


def teacher_data(
    n: int, d_in: int = 64, seed: int = 0
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d_in, generator=g)
    a = torch.randn(d_in, HEADS["cls"], generator=g)
    b = torch.randn(d_in, generator=g) / d_in**0.5
    c = torch.randn(d_in, HEADS["aux"], generator=g)
    targets = {
        "cls": (x @ a).argmax(dim=1),
        "reg": torch.sin(3 * (x @ b)).unsqueeze(1),
        "aux": (x @ c > 0).float(),
    }
    return x, targets


class _Dict(torch.utils.data.Dataset):
    def __init__(self, x: torch.Tensor, targets: dict[str, torch.Tensor]) -> None:
        self.x, self.targets = x, targets

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        return self.x[i], {t: v[i] for t, v in self.targets.items()}


def build_loader(
    batch_size: int = 256, n: int = 4096, d_in: int = 64, seed: int = 0, shuffle: bool = True
) -> DataLoader:
    x, targets = teacher_data(n, d_in, seed)
    return DataLoader(_Dict(x, targets), batch_size=batch_size, shuffle=shuffle, drop_last=True)


__all__ = ["MultiHeadMLP", "TensorDataset", "build_loader", "build_model", "teacher_data"]
