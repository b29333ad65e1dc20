"""Gradient accumulation and loss scaling in the step core, through GradientProbe and Balancer.

Accumulation: K micro-batches give the Jacobian (so the Gramian, cosines, norms) and the
update of one step on the K micro-batches concatenated. Scaling: a GradScaler-scaled step
reports the metrics of the unscaled one, leaves the scaled update for ``scaler.step``, and an
overflowing step runs no method and is skipped by the scaler.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from mtldiag import Balancer, GradientProbe, methods

TASKS = ("a", "b", "c")


class Net(nn.Module):
    """A trunk and three heads; no batch-coupled layer."""

    def __init__(self) -> None:
        super().__init__()
        self.trunk = nn.Sequential(nn.Linear(5, 6), nn.Tanh(), nn.Linear(6, 4))
        self.heads = nn.ModuleDict({t: nn.Linear(4, 1) for t in TASKS})

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        z = self.trunk(x)
        return {t: h(z) for t, h in self.heads.items()}


def model() -> Net:
    torch.manual_seed(0)
    return Net()


def batch(n: int = 12) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return torch.randn(n, 5, generator=g), torch.randn(n, 3, generator=g) * torch.tensor([4, 1, 1])


def losses(net: Net, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
    out = net(x)
    return {t: ((out[t][:, 0] - y[:, i]) ** 2).mean() for i, t in enumerate(TASKS)}


def grads(net: Net) -> list[torch.Tensor]:
    return [p.grad.clone() for p in net.parameters()]


@pytest.mark.parametrize("name", ["ew", "gradnorm", "uncertainty", "pcgrad", "mgda", "graddrop"])
@pytest.mark.parametrize("every", [1, 0])
def test_k_micro_batches_equal_one_concatenated_batch(name: str, every: int) -> None:
    x, y = batch(12)
    ref_net = model()
    ref = GradientProbe(ref_net, every=every, method=methods.create(name))
    want = ref.backward(losses(ref_net, x, y))

    net = model()
    probe = GradientProbe(net, every=every, method=methods.create(name), accumulate=3)
    steps = [probe.backward(losses(net, x[i : i + 4], y[i : i + 4])) for i in (0, 4, 8)]
    assert [s.complete for s in steps] == [False, False, True]
    got = steps[-1]
    assert got.step == want.step == 0 and probe.step_index == 1
    assert got.losses == pytest.approx(want.losses, rel=1e-6)
    for g, w in zip(grads(net), grads(ref_net), strict=True):
        torch.testing.assert_close(g, w, rtol=1e-5, atol=1e-6)
    if every:
        torch.testing.assert_close(got.gramian, want.gramian, rtol=1e-5, atol=1e-8)
        assert got.metrics.cosine[0] == pytest.approx(want.metrics.cosine[0], rel=1e-5)
        assert got.metrics.grad_norm == pytest.approx(want.metrics.grad_norm, rel=1e-5)


def test_accumulated_steps_follow_each_other() -> None:
    """The sums start afresh each optimizer step: step 2 of K=2 equals its own pair."""
    x, y = batch(16)
    net = model()
    probe = GradientProbe(net, every=1, method=methods.create("mgda"), accumulate=2)
    for i in (0, 4):
        probe.backward(losses(net, x[i : i + 4], y[i : i + 4]))
    net.zero_grad()
    second = [probe.backward(losses(net, x[i : i + 4], y[i : i + 4])) for i in (8, 12)][-1]
    ref_net = model()
    want = GradientProbe(ref_net, every=1, method=methods.create("mgda")).backward(
        losses(ref_net, x[8:], y[8:])
    )
    assert second.step == 1
    torch.testing.assert_close(second.gramian, want.gramian, rtol=1e-5, atol=1e-8)


def test_balancer_accumulates_like_the_probe() -> None:
    x, y = batch(12)
    ref_net, net = model(), model()
    ref = Balancer(
        methods.create("cagrad"), ref_net.trunk.named_parameters(), ref_net.heads.parameters()
    )
    ref.backward(losses(ref_net, x, y))
    bal = Balancer(
        methods.create("cagrad"),
        net.trunk.named_parameters(),
        other_params=net.heads.parameters(),
        accumulate=2,
    )
    first = bal.backward(losses(net, x[:6], y[:6]))
    last = bal.backward(losses(net, x[6:], y[6:]))
    assert not first.complete and last.complete
    for g, w in zip(grads(net), grads(ref_net), strict=True):
        torch.testing.assert_close(g, w, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", ["ew", "mgda", "graddrop"])
def test_scaled_step_reports_the_unscaled_metrics(name: str) -> None:
    x, y = batch(12)
    ref_net = model()
    want = GradientProbe(ref_net, method=methods.create(name)).backward(losses(ref_net, x, y))

    net = model()
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**10)
    probe = GradientProbe(net, method=methods.create(name), scaler=scaler)
    got = probe.backward(losses(net, x, y))
    assert got.finite
    torch.testing.assert_close(got.gramian, want.gramian, rtol=1e-6, atol=0)
    assert got.metrics.grad_norm == pytest.approx(want.metrics.grad_norm, rel=1e-6)
    assert got.losses == pytest.approx(want.losses, rel=1e-7)
    # .grad stays scaled for the scaler; its unscale_ gives the unscaled update
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    scaler.unscale_(opt)
    for g, w in zip(grads(net), grads(ref_net), strict=True):
        torch.testing.assert_close(g, w, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("every", [1, 0])
def test_an_overflowing_step_is_skipped_by_the_scaler(every: int) -> None:
    x, y = batch(12)
    net = model()
    before = [p.detach().clone() for p in net.parameters()]
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    # A scale at float32's edge: the scaled gradients overflow, as fp16 ones do.
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**127)
    probe = GradientProbe(net, every=every, method=methods.create("uncertainty"), scaler=scaler)
    step = probe.backward(losses(net, x, y))
    scaler.step(opt)
    scaler.update()
    assert scaler.get_scale() == 2.0**126  # backed off: the scaler found inf and skipped
    for p, b in zip(net.parameters(), before, strict=True):
        assert torch.equal(p.detach(), b)
    if every:  # the per-task pass saw the overflow: no metrics, the method not updated
        assert not step.finite and step.metrics is None
        assert torch.equal(probe.method.log_var, torch.zeros(3, dtype=torch.float64))
