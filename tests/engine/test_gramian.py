import math

import torch

from mtldiag.engine.gramian import cosines, gms, norms, stacked_gramians, step_metrics
from mtldiag.engine.jacobian import build_layout


def test_cosine_norm_gms_match_closed_form():
    g1 = torch.tensor([3.0, 4.0, 0.0])
    g2 = torch.tensor([-4.0, 3.0, 12.0])
    jac = torch.stack([g1, g2]).double()
    gram = jac @ jac.T
    n = norms(gram)
    assert torch.allclose(n, torch.tensor([5.0, 13.0], dtype=torch.float64))
    expected_cos = float(g1 @ g2) / (5 * 13)  # (-12 + 12 + 0) / 65 = 0
    assert math.isclose(float(cosines(gram)[0, 1]), expected_cos, abs_tol=1e-12)
    assert math.isclose(float(gms(gram)[0, 1]), 2 * 5 * 13 / (25 + 169), rel_tol=1e-12)


def test_negative_cosine_sign_and_value():
    jac = torch.tensor([[1.0, 0.0], [-1.0, 1.0]], dtype=torch.float64)
    c = cosines(jac @ jac.T)[0, 1]
    assert math.isclose(float(c), -1 / math.sqrt(2), rel_tol=1e-12)


def test_zero_norm_gives_zero_cosine_and_unit_gms_not_nan():
    jac = torch.tensor([[0.0, 0.0], [1.0, 2.0], [0.0, 0.0]], dtype=torch.float64)
    gram = jac @ jac.T
    c, s = cosines(gram), gms(gram)
    assert not torch.isnan(c).any() and not torch.isnan(s).any()
    assert float(c[0, 1]) == 0.0
    assert float(s[0, 2]) == 1.0  # both zero: equal magnitudes
    assert float(s[0, 1]) == 0.0  # one zero, one not


def test_layer_gramians_sum_to_whole_and_match_per_layer_cosines():
    torch.manual_seed(0)
    params = [
        ("enc.0.weight", torch.zeros(3, 4)),
        ("enc.0.bias", torch.zeros(3)),
        ("enc.1.weight", torch.zeros(2, 3)),
    ]
    layout = build_layout(params)
    assert list(layout.layer_slices) == ["enc.0", "enc.1"]
    jac = torch.randn(3, layout.numel)
    stack = stacked_gramians(jac, layout)
    whole = (jac @ jac.T).double()
    assert torch.allclose(stack[0], whole, atol=1e-5)
    assert torch.allclose(stack[1] + stack[2], stack[0], atol=1e-10)
    m = step_metrics(stack, layout)
    s = layout.layer_slices["enc.1"]
    a, b = jac[0, s], jac[1, s]
    expected = float(a @ b / (a.norm() * b.norm()))
    assert m.layers == ["*", "enc.0", "enc.1"]
    assert math.isclose(m.cosine[2][0], expected, rel_tol=1e-5)
    assert math.isclose(m.grad_norm[1], float(jac[1].norm()), rel_tol=1e-5)


def test_small_gram_chunked_matches_float64_on_strided_wide_rows():
    from mtldiag.engine.gramian import small_gram

    torch.manual_seed(1)
    wide = torch.randn(3, 30_011)[:, 7:20_007]  # strided rows, not a multiple of the chunk
    exact = wide.double() @ wide.double().T
    assert torch.allclose(small_gram(wide).double(), exact, rtol=1e-5, atol=1e-2)
