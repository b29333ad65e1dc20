"""The tasks: form reads HF-style keyword batches and flat (x, y1, y2, ...) batches."""

from __future__ import annotations

import torch
from torch import nn

from mtldiag.runs.losses import build_loss_fn
from mtldiag.spec import parse_spec

from ..conftest import SYNTHETIC


class KeywordModel(nn.Module):
    """Takes keyword arguments, as Hugging Face models do; ignores the label keys."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 2)

    def forward(self, input_ids, attention_mask):
        out = self.lin(input_ids * attention_mask)
        return {"a": out[:, 0], "b": out[:, 1]}


def _loss_fn(tasks: dict):
    return build_loss_fn(parse_spec({**SYNTHETIC, "tasks": tasks}))


def test_dict_batch_without_inputs_calls_the_model_with_keywords():
    model = KeywordModel()
    batch = {
        "input_ids": torch.randn(5, 4),
        "attention_mask": torch.ones(5, 4),
        "label_a": torch.randn(5),
        "label_b": torch.randn(5),
    }
    fn = _loss_fn({t: {"output": t, "target": f"label_{t}", "loss": "mse"} for t in "ab"})
    losses = fn(model, batch)
    out = model(batch["input_ids"], batch["attention_mask"])
    assert torch.allclose(losses["b"], nn.functional.mse_loss(out["b"], batch["label_b"]))


class TupleModel(nn.Linear):
    """Three outputs by index."""

    def forward(self, x):
        return tuple(super().forward(x).T)


def test_flat_batch_targets_by_index():
    model = TupleModel(3, 3)
    x, ys = torch.randn(6, 3), [torch.randn(6) for _ in range(3)]
    tasks = {t: {"output": i, "target": i, "loss": "mse"} for i, t in enumerate("abc")}
    losses = _loss_fn(tasks)(model, (x, *ys))
    assert torch.allclose(losses["c"], nn.functional.mse_loss(model(x)[2], ys[2]))
