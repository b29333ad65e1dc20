import torch
from torch import nn

from mtldiag.engine.jacobian import JacobianEngine, build_layout


def _model():
    torch.manual_seed(0)
    trunk = nn.Linear(4, 3)
    heads = nn.ModuleList([nn.Linear(3, 1), nn.Linear(3, 1)])
    return trunk, heads


def test_jacobian_rows_equal_per_task_gradients_and_heads_get_weighted_grads():
    trunk, heads = _model()
    x = torch.randn(5, 4)
    shared = list(trunk.named_parameters())
    layout = build_layout([(f"trunk.{n}", p) for n, p in shared])
    engine = JacobianEngine(layout, list(heads.parameters()))

    def losses():
        z = trunk(x)
        return [heads[0](z).pow(2).mean(), (heads[1](z) - 1).abs().mean()]

    jac = engine.compute(losses(), head_weights=[2.0, 0.5]).clone()
    for i in range(2):
        ref = torch.autograd.grad(losses()[i], [p for _, p in shared])
        assert torch.allclose(jac[i], torch.cat([g.reshape(-1) for g in ref]), atol=1e-6)
    # Head 0 gets only task 0's gradient, times its weight 2.
    ref_h0 = torch.autograd.grad(losses()[0], list(heads[0].parameters()))
    assert torch.allclose(heads[0].weight.grad, 2.0 * ref_h0[0], atol=1e-6)
    ref_h1 = torch.autograd.grad(losses()[1], list(heads[1].parameters()))
    assert torch.allclose(heads[1].bias.grad, 0.5 * ref_h1[1], atol=1e-6)


def test_write_direction_fills_shared_grads_in_layout_order():
    trunk, _ = _model()
    layout = build_layout([(f"t.{n}", p) for n, p in trunk.named_parameters()])
    engine = JacobianEngine(layout)
    d = torch.arange(layout.numel, dtype=torch.float32)
    engine.write_direction(d)
    assert torch.equal(trunk.weight.grad.reshape(-1), d[:12])
    assert torch.equal(trunk.bias.grad, d[12:15])


def test_task_not_reaching_a_parameter_gets_zero_columns():
    a, b = nn.Linear(2, 1), nn.Linear(2, 1)
    layout = build_layout([("a.weight", a.weight), ("b.weight", b.weight)])
    x = torch.ones(3, 2)
    jac = JacobianEngine(layout).compute([a(x).sum(), (a(x) + b(x)).sum()])
    assert torch.equal(jac[0, 2:], torch.zeros(2))
    assert torch.allclose(jac[1, 2:], torch.full((2,), 3.0))
