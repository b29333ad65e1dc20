"""The one-task-per-step path (M-ConFIG) through Balancer and GradientProbe: one task's loss
back-propagated per step, the shared .grad the method's direction, training independent of
instrumentation, and one-sentence refusals of what the path does not support."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from mtldiag import methods
from mtldiag.engine import alternating
from mtldiag.engine import step as step_mod
from mtldiag.engine.balancer import Balancer
from mtldiag.engine.probe import GradientProbe
from mtldiag.errors import TrainingError
from mtldiag.methods import MethodError, RunContext

T = 3


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.trunk = nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 8))
        self.heads = nn.ModuleList([nn.Linear(8, 1) for _ in range(T)])
        self.through: list[int] = []  # the tasks a backward passed through, in order

    def forward(self, x):
        h = self.trunk(x)
        outs = []
        for i, head in enumerate(self.heads):
            y = head(h)
            y.register_hook(lambda g, i=i: self.through.append(i))
            outs.append(y.squeeze(-1))
        return outs

    def losses(self, x, y):
        return {f"t{i}": ((o - y[:, i]) ** 2).mean() * (i + 1) for i, o in enumerate(self(x))}


def batch(s: int):
    g = torch.Generator().manual_seed(100 + s)
    return torch.randn(16, 5, generator=g), torch.randn(16, T, generator=g)


def flat_shared(net) -> torch.Tensor:
    return torch.cat([p.grad.reshape(-1) for p in net.trunk.parameters()])


def balancer(net, **kw):
    return Balancer(
        methods.create("m_config"),
        net.trunk.named_parameters(),
        other_params=list(net.heads.parameters()),
        **kw,
    )


def test_balancer_backpropagates_one_task_per_step_and_writes_the_direction():
    net = Net()
    bal = balancer(net)
    twin = methods.create("m_config")
    twin.reset(RunContext(tasks=tuple(f"t{i}" for i in range(T)), dtype=torch.float32))
    opt = torch.optim.SGD(net.parameters(), lr=0.05)
    for s in range(2 * T + 1):
        k = s % T
        x, y = batch(s)
        opt.zero_grad(set_to_none=True)
        losses = net.losses(x, y)
        # The twin's input: task k's gradient over the trunk, taken before the step.
        g = torch.autograd.grad(losses[f"t{k}"], list(net.trunk.parameters()), retain_graph=True)
        expected = twin.task_direction(k, torch.cat([v.reshape(-1) for v in g]))
        net.through.clear()
        info = bal.backward(losses)
        assert net.through == [k]  # one task's loss back-propagated, no other
        assert info.weights is None
        for j, head in enumerate(net.heads):
            assert (head.weight.grad is None) == (j != k), (s, j)
        assert torch.equal(flat_shared(net), expected)
        if s < T - 1:
            assert float(expected.norm()) == 0.0  # warm-up: not every task seen yet
        else:
            assert float(expected.norm()) > 0.0
        opt.step()


def test_the_head_gets_the_plain_gradient_of_its_task():
    net = Net()
    bal = balancer(net)
    x, y = batch(0)
    losses = net.losses(x, y)
    ref = torch.autograd.grad(losses["t0"], list(net.heads[0].parameters()), retain_graph=True)
    bal.backward(losses)
    assert all(torch.equal(p.grad, r) for p, r in zip(net.heads[0].parameters(), ref, strict=True))


@pytest.mark.parametrize("set_to_none", [True, False])
def test_a_grad_kept_from_one_step_does_not_change_with_the_next(set_to_none):
    # The direction is computed in a buffer the engine reuses: no .grad may view it.
    net = Net()
    bal = balancer(net)
    opt = torch.optim.SGD(net.parameters(), lr=0.05)
    kept = []
    for s in range(T + 2):
        opt.zero_grad(set_to_none=set_to_none)
        bal.backward(net.losses(*batch(s)))
        if not set_to_none and s >= T:  # every head has had a .grad: zeroed, not taken
            assert float(net.heads[(s + 1) % T].weight.grad.abs().sum()) == 0.0
        grads = [p.grad for p in net.trunk.parameters()]
        if set_to_none:
            kept.append((grads, [g.clone() for g in grads]))
        assert bal.engine._buffer is not None
        assert all(
            g.untyped_storage().data_ptr() != bal.engine._buffer.untyped_storage().data_ptr()
            for g in grads
        )
        opt.step()
    for grads, copies in kept:
        assert all(torch.equal(g, c) for g, c in zip(grads, copies, strict=True))


def train(every: int, steps: int = 2 * T + 2):
    net = Net()
    probe = GradientProbe(net, shared=["trunk.*"], every=every, method=methods.create("m_config"))
    # Adam moves a parameter whose .grad is zeros, not one whose .grad is None: a head of
    # another task given a zero .grad on an instrumented step would show here.
    opt = torch.optim.Adam(net.parameters(), lr=0.01)
    seen, metrics = [], []
    for s in range(steps):
        x, y = batch(s)
        opt.zero_grad(set_to_none=True)
        net.through.clear()
        out = probe.backward(net.losses(x, y))
        seen.append(sorted(net.through))
        metrics.append(out.metrics)
        opt.step()
    return net, seen, metrics


def test_probe_trains_the_same_with_and_without_instrumentation():
    plain, seen0, m0 = train(every=0)
    inst, seen1, m1 = train(every=1)
    every2, _, _ = train(every=2)
    # Step 0 also has the probe's setup: which parameters each task reaches (T passes).
    assert seen0[1:] == [[s % T] for s in range(1, len(seen0))]
    assert seen1[1:] == [[0, 1, 2]] * (len(seen1) - 1)  # all T for an instrumented step's metrics
    assert all(m is None for m in m0)
    assert all(len(m.cosine[0]) == 3 and m.grad_norm[2] > 0 for m in m1)
    for other in (inst, every2):
        for (name, a), b in zip(plain.named_parameters(), other.parameters(), strict=True):
            assert torch.equal(a, b), name


def test_step_core_gives_the_instrumented_gramians_of_all_tasks():
    net = Net()
    bal = balancer(net)
    bal.backward(net.losses(*batch(0)))  # reset the method through the first step
    x, y = batch(1)
    losses = net.losses(x, y)
    rows = [
        torch.cat(
            [
                g.reshape(-1)
                for g in torch.autograd.grad(v, list(net.trunk.parameters()), retain_graph=True)
            ]
        )
        for v in losses.values()
    ]
    j = torch.stack(rows).double()
    ordered = list(losses.values())
    res = step_mod.backward_step(bal.engine, bal.method, ordered, torch.ones(T), 1, per_task=True)
    assert res.weights is None and res.gramians is not None
    assert torch.allclose(res.gramians[0].double(), j @ j.T, rtol=1e-5)


# ---- refusals: one sentence and a hint -------------------------------------------------


def _fails(call, fragment: str, kind=MethodError):
    with pytest.raises(kind) as info:
        call()
    msg = info.value.message
    assert fragment in msg and "\n" not in msg and msg.count(". ") == 0, msg
    return info.value


def test_accumulation_is_refused():
    net = Net()
    bal = balancer(net, accumulate=2)
    err = _fails(lambda: bal.backward(net.losses(*batch(0))), "gradient accumulation")
    assert err.hint and "accumulate" in err.hint


def test_a_grad_scaler_is_refused():
    net = Net()
    bal = balancer(net)
    bal.scaler = torch.amp.GradScaler("cpu", init_scale=4.0)
    assert bal.scaler.is_enabled()
    err = _fails(lambda: bal.backward(net.losses(*batch(0))), "does not take a GradScaler")
    assert "bf16" in err.hint


def test_representation_mode_is_refused():
    net = Net()
    bal = balancer(net)
    x, y = batch(0)
    z = net.trunk(x)
    losses = {f"t{i}": ((h(z).squeeze(-1) - y[:, i]) ** 2).mean() for i, h in enumerate(net.heads)}
    err = _fails(lambda: bal.backward(losses, features=z), "not the representation")
    assert "representation" in err.hint


def test_torchrun_is_refused(monkeypatch):
    net = Net()
    bal = balancer(net)
    monkeypatch.setattr(alternating.distributed, "context", lambda: object())
    _fails(lambda: bal.backward(net.losses(*batch(0))), "does not run under torchrun")


def test_a_task_without_labels_is_refused():
    net = Net()
    probe = GradientProbe(net, shared=["trunk.*"], method=methods.create("m_config"))
    losses = net.losses(*batch(0))
    probe.backward(losses)
    losses = net.losses(*batch(1))
    losses["t1"] = None
    _fails(lambda: probe.backward(losses), "cannot leave out task(s) t1", TrainingError)


def test_the_step_core_refuses_fewer_losses_than_tasks():
    net = Net()
    bal = balancer(net)
    bal.backward(net.losses(*batch(0)))
    ordered = list(net.losses(*batch(1)).values())[:2]
    err = _fails(
        lambda: step_mod.backward_step(
            bal.engine, bal.method, ordered, torch.ones(2), 1, per_task=False
        ),
        "needs all 3 task losses at every step, got 2",
    )
    assert err.hint
