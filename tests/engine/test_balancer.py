"""Balancer: a method in the user's own loop fills every .grad correctly."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from mtldiag import methods
from mtldiag.engine.balancer import Balancer


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.trunk = nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 8))
        self.heads = nn.ModuleList([nn.Linear(8, 1) for _ in range(3)])

    def losses(self, x, y):
        h = self.trunk(x)
        return {
            f"t{i}": ((head(h).squeeze(-1) - y[:, i]) ** 2).mean() * (i + 1)
            for i, head in enumerate(self.heads)
        }


def data():
    g = torch.Generator().manual_seed(1)
    return torch.randn(16, 5, generator=g), torch.randn(16, 3, generator=g)


def jacobian(net, x, y):
    rows = []
    for loss in net.losses(x, y).values():
        gs = torch.autograd.grad(loss, list(net.trunk.parameters()), retain_graph=True)
        rows.append(torch.cat([g.reshape(-1) for g in gs]))
    return torch.stack(rows)


def shared_grad(net):
    return torch.cat([p.grad.reshape(-1) for p in net.trunk.parameters()])


@pytest.mark.parametrize("name", ["pcgrad", "mgda", "cagrad", "upgrad", "graddrop"])
def test_gradient_method_direction_and_heads(name):
    net = Net()
    x, y = data()
    j = jacobian(net, x, y)
    bal = Balancer(
        methods.create(name),
        net.trunk.named_parameters(),
        other_params=list(net.heads.parameters()),
    )
    info = bal.backward(net.losses(x, y))
    ref = methods.create(name)
    ref.reset(bal.method.ctx)  # same seed: same random draws
    expected = ref.aggregate(j.double(), None)
    assert torch.allclose(shared_grad(net).double(), expected, rtol=1e-4, atol=1e-6)
    # Heads: each head gets its own plain gradient (as in the trainer), whatever the weights.
    losses = net.losses(x, y)
    for i, head in enumerate(net.heads):
        g = torch.autograd.grad(losses[f"t{i}"], head.weight)[0]
        assert torch.allclose(head.weight.grad, g, rtol=1e-5, atol=1e-8)
    if name in ("mgda", "cagrad", "upgrad", "pcgrad"):
        assert info.weights is not None and len(info.weights) == 3


def test_balancer_runs_t_backward_passes_only(monkeypatch):
    # A gradient method costs exactly T autograd.grad calls (the Jacobian), nothing else.
    calls = []
    real = torch.autograd.grad

    def counting(*args, **kwargs):
        calls.append(kwargs.get("retain_graph"))
        return real(*args, **kwargs)

    net = Net()
    x, y = data()
    bal = Balancer(
        methods.create("mgda"),
        net.trunk.named_parameters(),
        other_params=list(net.heads.parameters()),
    )
    monkeypatch.setattr(torch.autograd, "grad", counting)
    bal.backward(net.losses(x, y))
    assert calls == [True, True, False]  # the graph is freed by the last call


def test_weighting_method_is_one_weighted_backward():
    net, ref = Net(), Net()
    x, y = data()
    m = methods.create("fixed", weights={"t0": 1.0, "t1": 0.5, "t2": 2.0})
    Balancer(m, net.trunk.parameters(), net.heads.parameters()).backward(net.losses(x, y))
    ls = ref.losses(x, y)
    (ls["t0"] + 0.5 * ls["t1"] + 2.0 * ls["t2"]).backward()
    for p, q in zip(net.parameters(), ref.parameters(), strict=True):
        assert torch.allclose(p.grad, q.grad, atol=1e-7)


def test_gradnorm_gets_last_layer_norms_and_learns():
    net = Net()
    x, y = data()
    m = methods.create("gradnorm")
    bal = Balancer(m, net.trunk.named_parameters(), list(net.heads.parameters()))
    opt = torch.optim.SGD(net.parameters(), lr=0.01)
    for _ in range(5):
        opt.zero_grad()
        bal.backward(net.losses(x, y))
        opt.step()
    assert not torch.allclose(m.w, torch.ones(3, dtype=torch.float64))
    assert float(m.w.sum()) == pytest.approx(3.0)


def test_balancer_rejects_changed_tasks():
    net = Net()
    x, y = data()
    bal = Balancer(methods.create("ew"), net.trunk.parameters())
    bal.backward(net.losses(x, y))
    losses = net.losses(x, y)
    with pytest.raises(methods.MethodError, match="expected the tasks"):
        bal.backward({"t1": losses["t1"], "t0": losses["t0"]})


@pytest.mark.parametrize("layer", ["last", "all"])
def test_trainer_probe_gives_gradnorm_the_norms_of_its_layer(layer, monkeypatch):
    # Instrumented steps take them from the Jacobian, the others from partial passes: both
    # must be ||grad L_i|| over the last shared layer (default) or every shared parameter.
    from mtldiag.engine.probe import GradientProbe

    net = Net()
    x, y = data()
    m = methods.create("gradnorm", layer=layer)
    seen = []
    real = m.update
    monkeypatch.setattr(m, "update", lambda ls, s, n=None: (seen.append(n), real(ls, s, n)))
    probe = GradientProbe(net, shared=["trunk.*"], every=2, method=m)
    params = list(net.trunk.parameters()) if layer == "all" else list(net.trunk[2].parameters())
    for _ in range(2):  # step 0 instrumented, step 1 not
        losses = net.losses(x, y)
        expected = torch.tensor(
            [
                torch.cat(
                    [g.reshape(-1) for g in torch.autograd.grad(v, params, retain_graph=True)]
                ).norm()
                for v in losses.values()
            ]
        )
        for p in net.parameters():
            p.grad = None
        probe.backward(losses)
        assert torch.allclose(seen[-1].double(), expected.double(), rtol=1e-5)
