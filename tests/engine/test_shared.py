import pytest
import torch
from torch import nn

from mtldiag.engine.shared import select_shared
from mtldiag.errors import SpecError, UserCodeError


class Net(nn.Module):
    def __init__(self, tie=False):
        super().__init__()
        self.trunk = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 4))
        self.head_a = nn.Linear(4, 1)
        self.head_b = nn.Linear(4, 1)
        self.head_c = nn.Linear(4, 1)
        self.frozen = nn.Linear(4, 4)
        self.frozen.requires_grad_(False)
        if tie:
            self.head_b.weight = self.head_a.weight

    def forward(self, x):
        z = self.trunk(self.frozen(x))
        return {"a": self.head_a(z).mean(), "b": self.head_b(z).mean()}


def test_auto_finds_trunk_not_heads_nor_frozen():
    net = Net()
    sel = select_shared(net, net(torch.randn(3, 4)))
    assert sel.layout.names == ("trunk.0.weight", "trunk.0.bias", "trunk.2.weight", "trunk.2.bias")
    assert list(sel.layout.layer_slices) == ["trunk.0", "trunk.2"]
    assert "head_a.weight" in sel.other_names and not any("frozen" in n for n in sel.other_names)


def test_tied_parameter_counted_once_and_shared():
    net = Net(tie=True)
    sel = select_shared(net, net(torch.randn(3, 4)))
    assert sel.layout.names.count("head_a.weight") == 1
    assert "head_b.weight" not in sel.layout.names  # the tie is one parameter, named once
    assert sel.layout.numel == 20 + 20 + 4


def test_globs_select_and_unmatched_glob_errors():
    net = Net()
    sel = select_shared(net, net(torch.randn(3, 4)), ["trunk.2.*"])
    assert sel.layout.names == ("trunk.2.weight", "trunk.2.bias")
    with pytest.raises(SpecError, match="matches no trainable parameter"):
        select_shared(net, net(torch.randn(3, 4)), ["encoder.*"])


def test_task_not_reaching_shared_params_is_named():
    net = Net()
    out = net(torch.randn(3, 4))
    # c's loss reads only its own head, never the trunk.
    losses = {"a": out["a"], "b": out["b"], "c": net.head_c(torch.randn(3, 4)).mean()}
    with pytest.raises(UserCodeError, match="task 'c' does not reach"):
        select_shared(net, losses)
