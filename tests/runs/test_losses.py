"""The tasks form's losses: batch shapes, output/target picking, built-in losses against
torch's own, target adaptation, returned-loss checks, and label statistics in closed form."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mtldiag.errors import UserCodeError
from mtldiag.runs.losses import build_loss_fn, check_losses, label_stats, split_batch
from mtldiag.spec import parse_spec

from ..conftest import SYNTHETIC


class TwoHeads(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.trunk = nn.Linear(3, 4)
        self.cls = nn.Linear(4, 5)
        self.reg = nn.Linear(4, 1)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        h = self.trunk(x)
        return {"cls": self.cls(h), "reg": self.reg(h)}


def spec(tasks: dict) -> object:
    return parse_spec({**SYNTHETIC, "tasks": tasks})


def test_split_batch_forms():
    x, y = torch.zeros(2, 3), {"a": torch.ones(2)}
    assert split_batch((x, y))[0] is x
    inputs, targets = split_batch({"inputs": x, "a": y["a"]})
    assert inputs is x and targets["a"] is y["a"]
    # A flat (x, y1, y2): the targets by index.
    inputs, targets = split_batch((x, y["a"], y["a"] * 2))
    assert inputs is x and len(targets) == 2 and torch.equal(targets[1], y["a"] * 2)
    with pytest.raises(UserCodeError, match="the tasks: form needs"):
        split_batch((x,))


def test_built_in_losses_equal_torch_and_regression_targets_are_adapted():
    s = spec({"cls": {"loss": "cross_entropy"}, "reg": {"loss": "mse"}})
    model = TwoHeads()
    g = torch.Generator().manual_seed(1)
    x = torch.randn(6, 3, generator=g)
    labels = torch.tensor([0, 4, 2, 1, 3, 0]).float()  # float labels: read as class ids
    values = torch.randn(6, generator=g)  # shape (B,) against predictions (B, 1)
    losses = build_loss_fn(s)(model, (x, {"cls": labels, "reg": values}))
    out = model(x)
    assert torch.equal(losses["cls"], F.cross_entropy(out["cls"], labels.long()))
    assert torch.equal(losses["reg"], F.mse_loss(out["reg"], values.unsqueeze(-1)))


def test_a_missing_output_key_names_the_task_and_the_fix():
    s = spec({"cls": {"loss": "cross_entropy", "output": "logits"}})
    with pytest.raises(UserCodeError) as err:
        build_loss_fn(s)(TwoHeads(), (torch.zeros(2, 3), {"cls": torch.zeros(2)}))
    assert "task 'cls'" in err.value.message and "no key 'logits'" in err.value.message
    assert "tasks.cls.output" in err.value.hint


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ({}, "non-empty dict"),
        ({"a": 1.0}, "not a tensor"),
        ({"a": torch.ones(2, requires_grad=True)}, "not a scalar"),
        ({"a": torch.tensor(1.0)}, "does not require grad"),
    ],
)
def test_check_losses_rejects_what_training_cannot_use(value, words):
    with pytest.raises(UserCodeError, match=words):
        check_losses(value, None)


def test_check_losses_names_a_missing_task():
    with pytest.raises(UserCodeError, match="no loss for task"):
        check_losses({"a": torch.tensor(1.0, requires_grad=True)}, ["a", "b"])


def test_label_stats_closed_forms():
    s = spec({"cls": {"loss": "cross_entropy"}, "reg": {"loss": "mse"}})
    labels = torch.tensor([0, 0, 1, 2])  # frequencies 1/2, 1/4, 1/4
    values = torch.tensor([1.0, 3.0, 1.0, 3.0])  # mean 2, E[y^2] = 5, Var = 1
    loader = [(torch.zeros(4, 3), {"cls": labels, "reg": values})] * 3
    stats = label_stats(s, loader)
    entropy = -(0.5 * math.log(0.5) + 2 * 0.25 * math.log(0.25))
    assert stats["cls"].prior_loss == pytest.approx(entropy)
    assert stats["cls"].theory_initial_loss == pytest.approx(math.log(3))
    assert stats["reg"].prior_loss == pytest.approx(1.0)
    assert stats["reg"].theory_initial_loss == pytest.approx(5.0)


@pytest.mark.parametrize(
    ("target", "words"),
    [
        (torch.tensor([0.0, 1.5, 2.0, 1.0, 0.0, 3.0]), "needs class ids .whole numbers."),
        (torch.randn(6, 5) * 3, "class probabilities"),  # a regression target, logits' shape
    ],
)
def test_cross_entropy_refuses_float_targets_that_are_not_classes(target, words):
    s = spec({"cls": {"loss": "cross_entropy"}, "reg": {"loss": "mse"}})
    batch = (torch.randn(6, 3), {"cls": target, "reg": torch.randn(6)})
    with pytest.raises(UserCodeError, match=words):
        build_loss_fn(s)(TwoHeads(), batch)


def test_cross_entropy_takes_class_probabilities():
    s = spec({"cls": {"loss": "cross_entropy"}, "reg": {"loss": "mse"}})
    probs = torch.softmax(torch.randn(6, 5), dim=-1)
    losses = build_loss_fn(s)(
        TwoHeads(), (torch.randn(6, 3), {"cls": probs, "reg": torch.randn(6)})
    )
    assert losses["cls"].item() > 0
