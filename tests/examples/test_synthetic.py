import math

import torch

from mtldiag.engine.gramian import cosines, norms
from mtldiag.examples.synthetic import build_loader, build_model, task_maps


def _first_step_gradients(cosine, scale):
    torch.manual_seed(0)
    model = build_model(d_in=8, width=4, out_dim=2, n_tasks=3)
    x, targets = next(
        iter(
            build_loader(
                batch_size=16, n_batches=2, d_in=8, out_dim=2, cosine=cosine, scale=scale, noise=0.0
            )
        )
    )
    out = model(x)
    rows = []
    for t in "abc":
        loss = torch.nn.functional.mse_loss(out[t], targets[t])
        (g,) = torch.autograd.grad(loss, [model.encoder.weight], retain_graph=True)
        rows.append(g.reshape(-1))
    jac = torch.stack(rows).double()
    return jac @ jac.T


def test_constructed_cosine_and_norm_ratio_hold_at_first_step():
    for cos, scale in [(-0.5, 10.0), (0.3, 3.0), (-0.9, 1.0)]:
        gram = _first_step_gradients(cos, scale)
        c = cosines(gram)
        n = norms(gram)
        assert math.isclose(float(c[0, 1]), cos, abs_tol=1e-5)
        assert abs(float(c[0, 2])) < 1e-5 and abs(float(c[1, 2])) < 1e-5
        assert math.isclose(float(n[0] / n[1]), scale, rel_tol=1e-5)


def test_task_maps_have_requested_cosine():
    th = task_maps(8, 2, -0.25, 1.0, 3, seed=1)
    a, b = th["a"].reshape(-1), th["b"].reshape(-1)
    assert math.isclose(float(a @ b / (a.norm() * b.norm())), -0.25, abs_tol=1e-6)
