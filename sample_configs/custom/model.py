"""Your own model, as a user writes it: a file next to the spec, no package needed.

A small CNN on 16x16 single-channel images with two tasks that share its encoder:
``cls`` (which quadrant holds the bright blob: 4 classes) and ``recon`` (reconstruct the image
through a small decoder). The spec points at this file with ``model.py:build_model``,
``model.py:build_loader``, ``model.py:compute_losses`` and ``model.py:evaluate``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn
from torch.utils.data import DataLoader, TensorDataset


class BlobNet(nn.Module):
    def __init__(self, channels: int = 16) -> None:
        super().__init__()
        self.encoder = nn.Sequential(  # (B, 1, 16, 16) -> (B, C, 4, 4)
            nn.Conv2d(1, channels, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(channels, channels, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.classifier = nn.Linear(channels * 16, 4)
        self.decoder = nn.Sequential(  # (B, C, 4, 4) -> (B, 1, 16, 16)
            nn.Upsample(scale_factor=4),
            nn.Conv2d(channels, 1, 3, padding=1),
        )

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = self.encoder(x)
        return self.classifier(z.flatten(1)), self.decoder(z)


def build_model(channels: int = 16) -> nn.Module:
    return BlobNet(channels)


def _blobs(n: int, seed: int) -> TensorDataset:
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 4, (n,), generator=g)
    images = torch.rand(n, 1, 16, 16, generator=g)  # noisy background: the blob is faint
    for i, q in enumerate(labels.tolist()):
        r, c = 8 * (q // 2) + 2, 8 * (q % 2) + 2
        images[i, 0, r : r + 3, c : c + 3] += 0.35
    return TensorDataset(images, labels)


def build_loader(n: int = 1024, batch_size: int = 64, split: str = "train") -> DataLoader:
    data = _blobs(n, seed=0 if split == "train" else 1)
    return DataLoader(data, batch_size=batch_size, shuffle=split == "train")


def compute_losses(
    model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]
) -> dict[str, torch.Tensor]:
    images, labels = batch
    logits, recon = model(images)
    return {"cls": F.cross_entropy(logits, labels), "recon": F.mse_loss(recon, images)}


def evaluate(model: nn.Module, loader: DataLoader) -> dict[str, float]:
    """Accuracy for ``cls`` (higher is better), reconstruction MSE for ``recon``."""
    correct = total = 0
    sq = 0.0
    for images, labels in loader:
        logits, recon = model(images)
        correct += int((logits.argmax(1) == labels).sum())
        total += len(labels)
        sq += float(F.mse_loss(recon, images, reduction="sum"))
    return {"cls": correct / total, "recon": sq / (total * 256)}
