"""Representation gradients: on a one-linear-layer trunk the parameter Gramian follows from the
representation one in closed form, the update is the hand-computed MGDA-UB direction, heads
get their own gradients, a weighting method's update is exact, and bad modules are refused."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from mtldiag import methods
from mtldiag.engine.balancer import Balancer
from mtldiag.engine.probe import GradientProbe
from mtldiag.engine.representation import (
    RepresentationEngine,
    RepresentationHook,
    auto_representation,
)
from mtldiag.errors import SpecError

B, D, F, H = 6, 5, 4, 3  # batch, input, representation and head widths


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.trunk = nn.Linear(D, F)  # z = X Wᵀ + b
        self.heads = nn.ModuleList(nn.Linear(F, H) for _ in range(2))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        z = self.trunk(x)
        return z, [torch.tanh(h(z)) for h in self.heads]


def _setup(seed: int = 0):
    torch.manual_seed(seed)
    net = Net().double()
    x = torch.randn(B, D, dtype=torch.float64)
    y = [torch.randn(B, H, dtype=torch.float64) for _ in range(2)]
    return net, x, y


def _losses(net, x, y):
    z, outs = net(x)
    return z, {f"t{i}": ((o - t) ** 2).mean() for i, (o, t) in enumerate(zip(outs, y, strict=True))}


def _rep_grads(net, x, y) -> torch.Tensor:
    z, losses = _losses(net, x, y)
    return RepresentationEngine(z).compute(list(losses.values())).double()  # (T, B*F)


def test_parameter_gramian_follows_from_the_representation_one_in_closed_form():
    """dL_i/dW = Z_iᵀ X and dL_i/db = Z_iᵀ 1, so G^θ_ij = tr(Z_iᵀ (X Xᵀ + 1 1ᵀ) Z_j)."""
    net, x, y = _setup()
    zs = _rep_grads(net, x, y).reshape(2, B, F)
    k = x @ x.T + torch.ones(B, B, dtype=torch.float64)
    expected = torch.einsum("ibf,bc,jcf->ij", zs, k, zs)
    net.zero_grad()
    probe = GradientProbe(net, shared=["trunk.*"], every=1)
    _, losses = _losses(net, x, y)
    got = probe.backward(losses).gramian  # parameter mode
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-9)  # float32 J


def test_representation_probe_gives_the_gramian_of_the_representation_gradients():
    net, x, y = _setup()
    zs = _rep_grads(net, x, y)
    net.zero_grad()
    probe = GradientProbe(net, shared=["trunk.*"], every=1)
    z, losses = _losses(net, x, y)
    step = probe.backward(losses, features=z)
    torch.testing.assert_close(step.gramian, zs @ zs.T, rtol=1e-5, atol=1e-9)
    assert step.metrics is not None and step.metrics.layers == ["*", "representation"]
    torch.testing.assert_close(
        torch.tensor(step.metrics.grad_norm, dtype=torch.float64), zs.norm(dim=1), rtol=1e-5, atol=0
    )


def test_mgda_direction_equals_the_hand_computed_min_norm_point_and_heads_keep_their_own():
    net, x, y = _setup(1)
    zs = _rep_grads(net, x, y)  # (2, B*F)
    z1, z2 = zs
    # min over a in [0, 1] of |a z1 + (1-a) z2|² (Sener & Koltun 2018, Alg. 1), sum scale (x T)
    a = float(((z2 - z1) @ z2 / ((z1 - z2) @ (z1 - z2))).clamp(0, 1))
    dz = 2 * (a * z1 + (1 - a) * z2).reshape(B, F)
    want_w = dz.T @ x  # dL/dW = dzᵀ X
    want_b = dz.sum(0)
    _, losses = _losses(net, x, y)
    heads = [
        torch.autograd.grad(loss, list(h.parameters()))
        for loss, h in zip(losses.values(), net.heads, strict=True)
    ]

    net.zero_grad()
    bal = Balancer(methods.create("mgda"), net.trunk.named_parameters(), net.heads.parameters())
    z, losses = _losses(net, x, y)
    step = bal.backward(losses, features=z)
    assert 0.0 < a < 1.0  # the interior case: both tasks weigh in
    assert step.weights == pytest.approx([2 * a, 2 * (1 - a)], rel=1e-5)
    torch.testing.assert_close(net.trunk.weight.grad, want_w, rtol=1e-5, atol=1e-8)
    torch.testing.assert_close(net.trunk.bias.grad, want_b, rtol=1e-5, atol=1e-8)
    for h, own in zip(net.heads, heads, strict=True):  # unweighted: grad L_i, not w_i grad L_i
        for p, g in zip(h.parameters(), own, strict=True):
            torch.testing.assert_close(p.grad, g)


def test_a_weighting_method_in_representation_mode_takes_the_exact_step():
    net, x, y = _setup(2)
    _, losses = _losses(net, x, y)
    sum(losses.values()).backward()
    want = [p.grad.clone() for p in net.parameters()]
    net.zero_grad()
    probe = GradientProbe(net, shared=["trunk.*"], every=1)  # instrumented: per-task passes
    z, losses = _losses(net, x, y)
    assert probe.backward(losses, features=z).metrics is not None
    for p, g in zip(net.parameters(), want, strict=True):
        torch.testing.assert_close(p.grad, g)


def test_hook_captures_the_module_output_and_auto_finds_the_trunk():
    net, x, _ = _setup()
    with RepresentationHook(net, "trunk") as hook:
        z, _ = net(x)
        assert hook.output is z
    assert not net.trunk._forward_hooks  # removed on exit
    assert auto_representation(net, ["trunk.weight", "trunk.bias"]) == "trunk"
    with pytest.raises(SpecError, match="not a module of the model"):
        RepresentationHook(net, "encoder")
    flat = nn.Linear(3, 3)  # the shared parameters sit on the root: no module is the trunk
    with pytest.raises(SpecError, match="no module that holds every shared parameter"):
        auto_representation(flat, ["weight", "bias"])
