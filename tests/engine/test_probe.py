import math

import torch
from torch import nn

from mtldiag.engine.probe import GradientProbe
from mtldiag.methods.base import GradientMethod, WeightingMethod


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.trunk = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 6))
        self.a = nn.Linear(6, 1)
        self.b = nn.Linear(6, 1)

    def losses(self, x):
        z = self.trunk(x)
        return {"a": self.a(z).pow(2).mean(), "b": (self.b(z) - 1).pow(2).mean()}


class Halves(WeightingMethod):
    name = "halves"

    def weights(self, losses, step):
        return torch.tensor([0.5, 2.0])


class FirstTaskOnly(GradientMethod):
    name = "first"

    def aggregate(self, jacobian, losses=None):
        return jacobian[0].clone()


def reference_grads(net, x, weights):
    losses = net.losses(x)
    total = weights[0] * losses["a"] + weights[1] * losses["b"]
    return torch.autograd.grad(total, list(net.parameters()))


def test_probe_fills_grads_like_weighted_backward_on_both_paths():
    net = Net()
    x = torch.randn(8, 4)
    ref = reference_grads(net, x, [0.5, 2.0])
    for every in (1, 0):  # Jacobian path and single-backward path give the same .grad
        net.zero_grad(set_to_none=True)
        probe = GradientProbe(net, every=every, method=Halves())
        step = probe.backward(net.losses(x))
        assert step.instrumented is (every == 1)
        for p, g in zip(net.parameters(), ref, strict=True):
            assert torch.allclose(p.grad, g, atol=1e-6)


def test_probe_metrics_match_hand_computed_cosine():
    net = Net()
    x = torch.randn(8, 4)
    probe = GradientProbe(net, every=1)
    step = probe.backward(net.losses(x))
    shared = list(net.trunk.parameters())
    ga = torch.cat([g.reshape(-1) for g in torch.autograd.grad(net.losses(x)["a"], shared)])
    gb = torch.cat([g.reshape(-1) for g in torch.autograd.grad(net.losses(x)["b"], shared)])
    assert math.isclose(
        step.metrics.cosine[0][0], float(ga @ gb / (ga.norm() * gb.norm())), rel_tol=1e-5
    )
    assert step.metrics.layers == ["*", "trunk.0", "trunk.2"]


def test_gradient_method_sets_shared_direction_and_plain_head_grads():
    net = Net()
    x = torch.randn(8, 4)
    GradientProbe(net, every=0, method=FirstTaskOnly()).backward(net.losses(x))
    ga = torch.autograd.grad(net.losses(x)["a"], list(net.trunk.parameters()))
    for p, g in zip(net.trunk.parameters(), ga, strict=True):
        assert torch.allclose(p.grad, g, atol=1e-6)
    (gb_head,) = torch.autograd.grad(net.losses(x)["b"], [net.b.weight])
    assert torch.allclose(net.b.weight.grad, gb_head, atol=1e-6)
