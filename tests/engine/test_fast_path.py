"""The J-free path (per-task gradient lists) gives what the Jacobian path gives."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from mtldiag.engine.gramian import (
    grads_layer_gramians,
    stacked_gramians,
    stacked_gramians_from_grads,
)
from mtldiag.engine.jacobian import JacobianEngine, build_layout


class Net(nn.Module):
    def __init__(self, n_tasks: int) -> None:
        super().__init__()
        torch.manual_seed(n_tasks)
        self.trunk = nn.Sequential(
            nn.Linear(6, 9), nn.Tanh(), nn.Linear(9, 7), nn.ReLU(), nn.Linear(7, 5)
        )
        self.heads = nn.ModuleList(nn.Linear(5, 2) for _ in range(n_tasks))

    def losses(self, x: torch.Tensor) -> list[torch.Tensor]:
        h = self.trunk(x)
        return [(head(h) - i).pow(2).mean() * (i + 1) for i, head in enumerate(self.heads)]


def _setup(n_tasks: int):
    net = Net(n_tasks)
    x = torch.randn(11, 6, generator=torch.Generator().manual_seed(2))
    layout = build_layout([(f"trunk.{n}", p) for n, p in net.trunk.named_parameters()])
    return net, x, layout


@pytest.mark.parametrize("n_tasks", [3, 5])
def test_gramians_and_direction_match_the_jacobian_path(n_tasks):
    net, x, layout = _setup(n_tasks)
    jac = JacobianEngine(layout).compute(net.losses(x)).clone()
    engine = JacobianEngine(layout)
    grads = engine.task_grads(net.losses(x))
    per_layer = grads_layer_gramians(grads, layout)
    assert per_layer.shape == (3, n_tasks, n_tasks)  # three Linear layers
    for li, s in enumerate(layout.layer_slices.values()):
        ref = jac[:, s].double() @ jac[:, s].double().T
        assert torch.allclose(per_layer[li].double(), ref, rtol=1e-6, atol=1e-9)
    stack = stacked_gramians_from_grads(grads, layout)
    ref_stack = stacked_gramians(jac, layout)
    assert stack.dtype == ref_stack.dtype == torch.float64
    assert stack.shape == ref_stack.shape == (4, n_tasks, n_tasks)
    assert torch.allclose(stack, ref_stack, rtol=1e-6, atol=1e-9)
    assert torch.allclose(stack[0], (jac.double() @ jac.double().T), rtol=1e-6, atol=1e-9)
    # A non-trivial weighting (one weight 1, one 0, negative ones): direction w @ J.
    w = torch.linspace(-0.5, 2.0, n_tasks)
    w[1] = 1.0
    w[-1] = 0.0
    engine.combine_into_grads(grads, w)
    got = torch.cat([p.grad.reshape(-1) for p in layout.params])
    assert torch.allclose(got, w @ jac, rtol=1e-6, atol=1e-7)
    assert engine._buffer is None  # no T x P buffer on this path


def test_missing_gradients_count_as_zero_columns():
    a, b = nn.Linear(2, 1), nn.Linear(2, 1)
    layout = build_layout([("a.weight", a.weight), ("b.weight", b.weight)])
    x = torch.ones(3, 2)
    engine = JacobianEngine(layout)
    grads = engine.task_grads([a(x).sum(), (a(x) + b(x)).sum()])
    assert grads[0][1] is None
    g = grads_layer_gramians(grads, layout)
    # Layer b: only task 1 reaches it, with gradient (3, 3): G_b = [[0, 0], [0, 18]].
    assert torch.equal(g[1], torch.tensor([[0.0, 0.0], [0.0, 18.0]]))
    engine.combine_into_grads(grads, torch.tensor([2.0, 0.5]))
    assert torch.allclose(b.weight.grad, torch.full((1, 2), 1.5))
    assert torch.allclose(a.weight.grad, torch.full((1, 2), 2.5 * 3.0))


def _jacobian(net: Net, x: torch.Tensor) -> torch.Tensor:
    shared = list(net.trunk.parameters())
    rows = [
        torch.cat([g.reshape(-1) for g in torch.autograd.grad(net.losses(x)[i], shared)])
        for i in range(len(net.heads))
    ]
    return torch.stack(rows)


@pytest.mark.parametrize("name", ["mgda", "pcgrad", "upgrad"])
def test_balancer_gramian_method_takes_the_j_free_path(name):
    from mtldiag import methods
    from mtldiag.engine.balancer import Balancer

    net, x, _ = _setup(3)
    jac = _jacobian(net, x)
    ref = methods.create(name)
    ref.reset(methods.RunContext(tasks=("t0", "t1", "t2")))
    expected = ref.aggregate(jac)
    bal = Balancer(
        methods.create(name),
        net.trunk.named_parameters(),
        other_params=list(net.heads.parameters()),
    )
    bal.backward({f"t{i}": loss for i, loss in enumerate(net.losses(x))})
    got = torch.cat([p.grad.reshape(-1) for p in net.trunk.parameters()])
    assert torch.allclose(got, expected, rtol=1e-5, atol=1e-6)
    assert bal.engine._buffer is None  # no T x P buffer was allocated


def test_balancer_graddrop_still_gets_j():
    from mtldiag import methods
    from mtldiag.engine.balancer import Balancer

    net, x, _ = _setup(3)
    bal = Balancer(methods.create("graddrop"), net.trunk.named_parameters())
    bal.backward({f"t{i}": loss for i, loss in enumerate(net.losses(x))})
    assert bal.engine._buffer is not None


@pytest.mark.parametrize("name", ["ew", "cagrad"])
def test_probe_instrumented_step_takes_the_j_free_path(name):
    from mtldiag import methods
    from mtldiag.engine.probe import GradientProbe

    net, x, layout = _setup(5)
    jac = _jacobian(net, x)
    stack = stacked_gramians(jac, layout)
    method = methods.create(name)
    probe = GradientProbe(net, shared=["trunk.*"], every=1, method=method)
    step = probe.backward({f"t{i}": loss for i, loss in enumerate(net.losses(x))})
    assert probe.engine is not None and probe.engine._buffer is None
    assert torch.allclose(step.gramian, stack[0], rtol=1e-6, atol=1e-9)
    cos = stack[1:, 0, 1] / (stack[1:, 0, 0] * stack[1:, 1, 1]).sqrt()
    assert step.metrics.cosine[1:] and [row[0] for row in step.metrics.cosine[1:]] == (
        pytest.approx(cos.tolist(), rel=1e-6)
    )
    w = torch.tensor(step.weights, dtype=torch.float32)
    got = torch.cat([p.grad.reshape(-1) for p in net.trunk.parameters()])
    assert torch.allclose(got, w @ jac, rtol=1e-5, atol=1e-6)
    if name == "ew":
        assert torch.allclose(got, jac.sum(0), rtol=1e-5, atol=1e-6)


def test_a_gradient_autograd_shares_between_parameters_is_not_overwritten():
    # d(p + q)/dp and d(p + q)/dq come back as one tensor object (checked below): summing in
    # place into it for p must not change q's gradient.
    p = torch.tensor([1.0, 2.0], requires_grad=True)
    q = torch.tensor([3.0, -1.0], requires_grad=True)
    layout = build_layout([("a.p", p), ("b.q", q)])
    engine = JacobianEngine(layout)
    grads = engine.task_grads([(p + q).pow(2).sum(), (p + q).pow(2).sum() * 3])
    assert grads[0][0] is grads[0][1]
    g_sum = 2 * (p + q).detach()  # (8, 2) for each of p and q in task 0; task 1 three times
    layers = grads_layer_gramians(grads, layout)
    expected = torch.tensor([[1.0, 3.0], [3.0, 9.0]]) * float(g_sum @ g_sum)
    assert torch.allclose(layers[0], expected) and torch.allclose(layers[1], expected)
    engine.combine_into_grads(grads, torch.tensor([0.5, 2.0]))
    assert torch.allclose(p.grad, 6.5 * g_sum) and torch.allclose(q.grad, 6.5 * g_sum)


def test_an_expanded_gradient_is_copied_before_the_sum():
    p = torch.zeros(3, requires_grad=True)
    layout = build_layout([("a.p", p)])
    engine = JacobianEngine(layout)
    grads = engine.task_grads([p.sum(), (2 * p).sum()])
    assert grads[0][0].stride() == (0,)  # autograd's expanded ones
    engine.combine_into_grads(grads, torch.tensor([3.0, 0.5]))
    assert torch.equal(p.grad, torch.full((3,), 4.0))
