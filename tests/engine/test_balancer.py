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


# GradNorm through the Balancer with ``model=``: the closed-form norms of the probe.


class Doubled(nn.Linear):
    """A Linear subclass whose forward differs: closed-form norms would be off by 2."""

    def forward(self, x):
        return 2 * super().forward(x)


class GNNet(nn.Module):
    """A trunk ending in an nn.Linear (``trunk.2``), ReLU, three heads; ``variant`` breaks the
    closed form one way: a Linear subclass, a skip connection around the layer, an in-place
    ReLU on its output, a trainable parameter of the model that is neither shared nor a head
    (``extra``) or one outside the model (``outside``)."""

    def __init__(self, variant="plain"):
        super().__init__()
        torch.manual_seed(0)
        last = Doubled(8, 8) if variant == "subclass" else nn.Linear(8, 8)
        self.trunk = nn.Sequential(nn.Linear(5, 8), nn.Tanh(), last)
        self.act = nn.ReLU(inplace=variant == "inplace")
        self.heads = nn.ModuleList([nn.Linear(8, 1) for _ in range(3)])
        self.variant = variant
        if variant == "extra":
            self.offset = nn.Parameter(torch.full((3,), 0.1))
        self.outside = torch.full((3,), 0.1, requires_grad=True)

    def losses(self, x, y):
        a = self.trunk[1](self.trunk[0](x))
        h = self.trunk[2](a)
        h = self.act(h + a if self.variant == "skip" else h)
        out = torch.cat([head(h) for head in self.heads], dim=1)
        if self.variant == "extra":
            out = out + self.offset
        if self.variant == "outside":
            out = out * self.outside
        return {f"t{i}": ((out[:, i] - y[:, i]) ** 2).mean() * (i + 1) for i in range(3)}

    def all_params(self):
        return [*self.parameters(), self.outside]


def gn_batch(n, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 5, generator=g), torch.randn(n, 3, generator=g)


def run_balancer(variant, with_model, n=4, steps=6, monkeypatch=None):
    """GradNorm through a Balancer for ``steps`` SGD steps: each step's .grad (every parameter,
    as autograd left it), the norms GradNorm was given, its weights; how often the closed form
    ran."""
    from mtldiag.engine import step as step_module

    calls = []
    real = step_module.linear_norm_pass
    if monkeypatch is not None:

        def counted(*args, **kwargs):
            calls.append(1)
            return real(*args, **kwargs)

        monkeypatch.setattr(step_module, "linear_norm_pass", counted)
    net = GNNet(variant)
    m = methods.create("gradnorm")
    norms = []
    upd = m.update
    m.update = lambda ls, s, g=None: (norms.append(g.clone()), upd(ls, s, g))
    opt = torch.optim.SGD(net.all_params(), lr=0.05)
    grads, weights = [], []
    with Balancer(
        m,
        net.trunk.named_parameters(),
        other_params=list(net.heads.parameters()),
        model=net if with_model else None,
    ) as bal:
        capture = bal.capture
        for s in range(steps):
            opt.zero_grad()
            bal.backward(net.losses(*gn_batch(n, s)))
            grads.append([None if p.grad is None else p.grad.clone() for p in net.all_params()])
            weights.append(m.w.clone())
            opt.step()
    if monkeypatch is not None:
        monkeypatch.setattr(step_module, "linear_norm_pass", real)
    return {"grads": grads, "norms": norms, "w": weights, "calls": len(calls), "capture": capture}


@pytest.mark.parametrize("n", [4, 16])  # the N x N form (N(in + T out) < T in out), the direct
def test_balancer_with_model_takes_the_closed_form_and_equals_the_partial_passes(n, monkeypatch):
    fast = run_balancer("plain", True, n=n, monkeypatch=monkeypatch)
    exact = run_balancer("plain", False, n=n, monkeypatch=monkeypatch)
    assert fast["calls"] == 6 and exact["calls"] == 0  # every step closed-form, or none
    assert fast["capture"] is not None and exact["capture"] is None
    assert fast["capture"]._handle is None  # removed when the with block ended
    # Step 0 (the same parameters, weights 1): every .grad bit for bit the plain backward's.
    for a, b in zip(fast["grads"][0], exact["grads"][0], strict=True):
        assert (a is None) == (b is None)
        assert a is None or torch.equal(a, b)
    for a, b in zip(fast["norms"], exact["norms"], strict=True):
        torch.testing.assert_close(a.double(), b.double(), rtol=1e-5, atol=0)
    torch.testing.assert_close(torch.stack(fast["w"]), torch.stack(exact["w"]), rtol=0, atol=1e-6)
    for s in range(6):
        for a, b in zip(fast["grads"][s], exact["grads"][s], strict=True):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_balancer_finds_the_layer_by_identity_and_close_removes_the_hook():
    net = GNNet()
    bal = Balancer(
        methods.create("gradnorm"),
        net.trunk.named_parameters(),  # "2.weight": no such name in net.named_modules()
        other_params=list(net.heads.parameters()),
        model=net,
    )
    capture = bal.capture
    assert capture is not None and capture.module is net.trunk[2]
    net.losses(*gn_batch(4, 0))
    assert capture.usable()
    bal.close()
    assert bal.capture is None and capture._handle is None
    net.losses(*gn_batch(4, 0))
    assert not capture.usable()  # the hook is gone
    bal.backward(net.losses(*gn_batch(4, 0)))  # the partial passes still work
    assert all(p.grad is not None for p in net.parameters())


@pytest.mark.parametrize(
    ("variant", "installed"),
    [("subclass", False), ("extra", False), ("skip", True), ("inplace", True), ("outside", True)],
)
def test_balancer_falls_back_where_the_closed_form_is_not_exact(variant, installed, monkeypatch):
    # Installed or not, no step takes the closed form; everything equals the no-model run.
    fast = run_balancer(variant, True, monkeypatch=monkeypatch)
    exact = run_balancer(variant, False)
    assert (fast["capture"] is not None) is installed
    assert fast["calls"] == 0
    for s in range(6):
        for a, b in zip(fast["grads"][s], exact["grads"][s], strict=True):
            assert (a is None) == (b is None)
            assert a is None or torch.equal(a, b)
    assert torch.equal(torch.stack(fast["w"]), torch.stack(exact["w"]))


def test_balancer_without_names_or_for_other_methods_installs_no_hook():
    net = GNNet()
    heads = list(net.heads.parameters())
    # Plain parameters are one layer, "shared": GradNorm's W is all of them, no single Linear.
    assert (
        Balancer(methods.create("gradnorm"), net.trunk.parameters(), heads, model=net).capture
        is None
    )
    named = net.trunk.named_parameters
    assert Balancer(methods.create("ew"), named(), heads, model=net).capture is None
    gn_all = methods.create("gradnorm", layer="all")
    assert Balancer(gn_all, named(), heads, model=net).capture is None
