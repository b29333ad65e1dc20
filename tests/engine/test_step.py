"""The one step core: the probe and the Balancer fill the same .grad through it, a direction
that views J's reused buffer is copied, and a float64 model keeps float64 losses."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from mtldiag import Balancer, GradientProbe, methods
from mtldiag.engine.jacobian import build_layout
from mtldiag.engine.step import detached_losses, grad_norm_params
from mtldiag.methods.base import GradientMethod


class Net(nn.Module):
    def __init__(self, dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.trunk = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 5)).to(dtype)
        self.heads = nn.ModuleList([nn.Linear(5, 1).to(dtype) for _ in range(3)])

    def losses(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        h = self.trunk(x)
        return {
            f"t{i}": ((head(h).squeeze(-1) - y[:, i]) ** 2).mean() * (i + 1)
            for i, head in enumerate(self.heads)
        }


def batch(seed: int, dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(12, 4, generator=g).to(dtype), torch.randn(12, 3, generator=g).to(dtype)


class FirstRow(GradientMethod):
    """A method whose direction is a view of J: task 0's gradient, ``J[0]``."""

    name = "first_row"

    def aggregate(self, jacobian: torch.Tensor, losses: torch.Tensor | None = None) -> torch.Tensor:
        return jacobian[0]


def _balancer(net: Net, method: methods.Method) -> Balancer:
    return Balancer(method, net.trunk.named_parameters(), other_params=list(net.heads.parameters()))


def _probe(net: Net, method: methods.Method) -> GradientProbe:
    return GradientProbe(net, shared=["trunk.*"], every=1, method=method)


@pytest.mark.parametrize("make", [_balancer, _probe], ids=["balancer", "probe"])
def test_a_grad_written_last_step_is_not_overwritten_by_the_next_jacobian(make):
    net = Net()
    runner = make(net, FirstRow())
    runner.backward(net.losses(*batch(1)))
    grads = [p.grad for p in net.trunk.parameters()]
    kept = [g.clone() for g in grads]
    for p in net.parameters():
        p.grad = None  # the user's zero_grad(set_to_none=True) before the next step
    runner.backward(net.losses(*batch(2)))
    for g, want in zip(grads, kept, strict=True):
        assert torch.equal(g, want)  # a view of J's buffer would now hold step 2's J[0]


@pytest.mark.parametrize("name", ["ew", "gradnorm", "uncertainty", "pcgrad", "mgda", "graddrop"])
def test_probe_and_balancer_fill_the_same_grad(name):
    # The probe on a plain step (every=0) and the Balancer run the same core: same .grad.
    a, b = Net(), Net()
    probe = GradientProbe(a, shared=["trunk.*"], every=0, method=methods.create(name))
    bal = _balancer(b, methods.create(name))
    for seed in (1, 2, 3):
        for net in (a, b):
            net.zero_grad(set_to_none=True)
        probe.backward(a.losses(*batch(seed)))
        bal.backward(b.losses(*batch(seed)))
        for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
            assert torch.allclose(pa.grad, pb.grad, rtol=1e-5, atol=1e-7)


def test_a_float64_model_keeps_float64_losses_in_the_balancer():
    net = Net(torch.float64)
    bal = _balancer(net, methods.create("ew"))
    x, y = batch(1, torch.float64)
    losses = net.losses(x, y)
    exact = [float(v.detach()) for v in losses.values()]
    step = bal.backward(losses)
    assert step.losses == exact  # float32 would round the third significant digit past 1e-7
    assert detached_losses([torch.tensor(1.0, dtype=torch.float16)]).dtype == torch.float32


def test_grad_norm_params_are_the_last_layer_or_all():
    net = Net()
    layout = build_layout(list(net.trunk.named_parameters()))
    last = grad_norm_params(layout, "last")
    assert [id(p) for p in last] == [id(net.trunk[2].weight), id(net.trunk[2].bias)]
    assert len(grad_norm_params(layout, "all")) == 4
