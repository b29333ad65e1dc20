"""Gradient methods: hand-worked cases, the properties the papers claim, degenerate inputs."""

from __future__ import annotations

import math

import pytest
import torch

from mtldiag import methods
from mtldiag.methods import GramianMethod, RunContext
from tests.methods._inputs import degenerate, random_jacobian

GRADIENT = [c.name for c in methods.METHODS if c.family == "gradient"]
ORDER_FREE = ["gradnormalize", "mgda", "cagrad", "imtl", "nash_mtl", "aligned_mtl", "upgrad"]


def make(name, tasks=3, **hp):
    m = methods.create(name, **hp)
    m.reset(RunContext(tasks=tuple(f"t{i}" for i in range(tasks)), seed=0))
    return m


def cos(a, b):
    return float(a @ b / (a.norm() * b.norm()))


# ---- hand-worked 2-D cases -------------------------------------------------------------


def test_pcgrad_two_vectors_by_hand():
    g1, g2 = torch.tensor([1.0, 0.0]), torch.tensor([-1.0, 1.0])
    # g1·g2 = -1: g1' = g1 - (-1/2) g2 = (0.5, 0.5); g2' = g2 - (-1/1) g1 = (0, 1).
    d = make("pcgrad", 2).aggregate(torch.stack([g1, g2]).double())
    assert torch.allclose(d, torch.tensor([0.5, 1.5], dtype=torch.float64))
    dm = make("pcgrad", 2, reduction="mean").aggregate(torch.stack([g1, g2]).double())
    assert torch.allclose(dm, torch.tensor([0.25, 0.75], dtype=torch.float64))


def test_pcgrad_leaves_non_conflicting_gradients_unchanged():
    j = torch.tensor([[1.0, 0.2, 0.0], [0.5, 1.0, 0.1], [0.0, 0.3, 1.0]], dtype=torch.float64)
    assert (j @ j.T >= 0).all()
    assert torch.allclose(make("pcgrad").aggregate(j), j.sum(0))


@pytest.mark.parametrize("seed", range(20))
def test_mgda_two_vectors_closed_form(seed):
    j = random_jacobian(2, 4, seed)
    g1, g2 = j
    w1 = float(((g2 - g1) @ g2) / ((g1 - g2) @ (g1 - g2)))
    w1 = min(max(w1, 0.0), 1.0)
    expected = 2 * (w1 * g1 + (1 - w1) * g2)  # sum convention: weights sum to T = 2
    assert torch.allclose(make("mgda", 2).aggregate(j), expected, atol=1e-10)


def test_cagrad_closed_form_for_orthogonal_equal_gradients():
    # g1 = e1, g2 = e2: g0 = (½, ½), by symmetry w = (½, ½), g_w = g0, so the paper's
    # d = g0 + c||g0|| g0/||g0|| = (1 + c) g0, then / (1 + c²) (rescale=1); times T for sum.
    j = torch.eye(2, dtype=torch.float64)
    for c in (0.0, 0.4, 1.0):
        d = make("cagrad", 2, c=c).aggregate(j)
        expected = 2 * (1 + c) / (1 + c**2) * torch.tensor([0.5, 0.5], dtype=torch.float64)
        assert torch.allclose(d, expected, atol=1e-10)


def test_cagrad_closed_form_conflicting_pair_reaches_the_worst_task_optimum():
    # g1 = (1, 0), g2 = (-½, 1): for large c the dual's optimum is MGDA-like; for any c the
    # direction maximises min_i g_iᵀd on the ball ||d - g0|| <= c||g0|| (checked by sampling).
    j = torch.tensor([[1.0, 0.0], [-0.5, 1.0]], dtype=torch.float64)
    c = 0.4
    d = make("cagrad", 2, c=c, rescale=0, reduction="mean").aggregate(j)
    g0 = j.mean(0)
    r = c * g0.norm()
    assert float((d - g0).norm()) == pytest.approx(float(r), rel=1e-9)
    best = max(
        float((j @ (g0 + r * torch.tensor([math.cos(a), math.sin(a)], dtype=torch.float64))).min())
        for a in [k * 2 * math.pi / 20000 for k in range(20000)]
    )
    assert float((j @ d).min()) >= best - 1e-6


def test_imtl_gives_equal_projections_on_unit_gradients():
    j = random_jacobian(3, 7, 4) * torch.tensor([[1.0], [10.0], [0.1]], dtype=torch.float64)
    d = make("imtl").aggregate(j)
    proj = (j @ d) / j.norm(dim=1)
    assert torch.allclose(proj, proj[0].expand(3), rtol=1e-9)


def test_nash_mtl_solves_the_bargaining_equation():
    j = random_jacobian(3, 8, 5)
    m = make("nash_mtl", max_norm=0.0)
    w = m.weights_from_gramian(j @ j.T)
    g = j @ j.T
    assert torch.allclose(w * (g @ w), torch.ones(3, dtype=torch.float64), atol=1e-8)
    assert m.warnings == []


def test_nash_mtl_keeps_previous_weights_and_warns_when_unsolvable():
    m = make("nash_mtl", 2, max_norm=0.0)
    good = random_jacobian(2, 4, 0)
    w_good = m.weights_from_gramian(good @ good.T)
    bad = torch.stack([good[0], -good[0]])  # 0 is a positive combination: no solution
    w_bad = m.weights_from_gramian(bad @ bad.T)
    assert torch.equal(w_good, w_bad)
    assert m.failed_steps == 1 and "kept the previous weights" in m.warnings[0]


def test_aligned_mtl_aligned_gradients_are_orthogonal_with_equal_norm():
    j = random_jacobian(3, 9, 6)
    g = (j @ j.T).double()
    lam, vec = torch.linalg.eigh(g)
    bal = lam.min().sqrt() * (vec / lam.sqrt()) @ vec.T  # B from the paper
    aligned = bal.T @ j  # rows: aligned task gradients
    ga = aligned @ aligned.T
    assert torch.allclose(ga, lam.min() * torch.eye(3, dtype=torch.float64), atol=1e-9)
    d = make("aligned_mtl").aggregate(j)
    assert torch.allclose(d, aligned.sum(0), atol=1e-9)


def test_gradnormalize_unit_and_mean():
    j = random_jacobian(3, 5, 7) * torch.tensor([[1e-3], [1.0], [1e3]], dtype=torch.float64)
    d = make("gradnormalize").aggregate(j)
    assert torch.allclose(d, (j / j.norm(dim=1, keepdim=True)).sum(0))
    dm = make("gradnormalize", norm="mean").aggregate(j)
    assert torch.allclose(dm, d * j.norm(dim=1).mean())


# ---- properties -------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["mgda", "upgrad"])
@pytest.mark.parametrize("seed", range(25))
def test_never_conflicts_with_any_task(name, seed):
    t = 2 + seed % 5
    j = random_jacobian(t, 3 + seed % 7, seed)
    if seed % 3 == 0:
        j[1] = -j[0] + 0.01 * j[1]
    d = make(name, t).aggregate(j)
    assert (j @ d >= -1e-9 * j.norm() ** 2).all()


@pytest.mark.parametrize("seed", range(5))
def test_upgrad_rows_are_the_euclidean_projections_onto_the_dual_cone(seed):
    # KKT of min ||x - g_i||² s.t. Jx >= 0: x = g_i + Jᵀμ, μ >= 0, μ_k (Jx)_k = 0.
    from mtldiag.methods._upgrad import project_rows

    j = random_jacobian(4, 6, 100 + seed)
    j[1] = -0.8 * j[0] + 0.3 * j[1]
    v = torch.from_numpy(project_rows((j @ j.T).numpy()))
    for i in range(4):
        x = v[i] @ j
        mu = v[i] - torch.eye(4, dtype=torch.float64)[i]
        assert (j @ x >= -1e-10).all() and (mu >= 0).all()
        assert float((mu * (j @ x)).abs().max()) < 1e-9


@pytest.mark.parametrize("name", ORDER_FREE)
def test_permuting_tasks_permutes_nothing_in_the_direction(name):
    j = random_jacobian(4, 9, 11)
    perm = torch.tensor([2, 0, 3, 1])
    d = make(name, 4).aggregate(j)
    dp = make(name, 4).aggregate(j[perm])
    assert torch.allclose(d, dp, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("name", ["mgda", "upgrad", "cagrad", "imtl", "aligned_mtl", "pcgrad"])
def test_positively_homogeneous_in_the_gradient_scale(name):
    j = random_jacobian(3, 6, 12)
    d1 = make(name).aggregate(j)
    d2 = make(name).aggregate(j * 1000.0)
    assert torch.allclose(d2, 1000.0 * d1, rtol=1e-8)


@pytest.mark.parametrize("name", ["imtl", "nash_mtl", "gradnormalize"])
def test_direction_invariant_to_rescaling_any_task_loss(name):
    # IMTL-G ("impartial"), Nash-MTL and unit normalisation claim invariance to loss scales.
    j = random_jacobian(3, 6, 13)
    scales = torch.tensor([[0.01], [1.0], [50.0]], dtype=torch.float64)
    d1, d2 = make(name).aggregate(j), make(name).aggregate(j * scales)
    assert cos(d1, d2) > 1 - 1e-10


def test_mgda_is_not_invariant_to_a_task_scale_unless_l2_normalised():
    j = random_jacobian(3, 6, 14)
    scales = torch.tensor([[0.1], [1.0], [10.0]], dtype=torch.float64)
    w_none = make("mgda").weights_from_gramian(j @ j.T)
    w_scaled = make("mgda").weights_from_gramian((j * scales) @ (j * scales).T)
    assert not torch.allclose(w_none, w_scaled, atol=1e-3)
    wl2 = make("mgda", normalization="l2").weights_from_gramian(j @ j.T)
    wl2s = make("mgda", normalization="l2").weights_from_gramian((j * scales) @ (j * scales).T)
    assert torch.allclose(wl2, wl2s, atol=1e-10)


@pytest.mark.parametrize("name", GRADIENT)
@pytest.mark.parametrize("case", list(degenerate()))
def test_degenerate_inputs_give_finite_directions(name, case):
    j = degenerate()[case]
    m = make(name, j.shape[0])
    d = m.aggregate(j, torch.ones(j.shape[0], dtype=torch.float64))
    assert d.shape == (j.shape[1],) and torch.isfinite(d).all()
    if name in ("mgda", "upgrad"):
        assert (j @ d >= -1e-7 * max(float(j.norm()) ** 2, 1e-300)).all()


def test_gramian_methods_use_only_the_gramian():
    j = random_jacobian(3, 6, 15)
    q, _ = torch.linalg.qr(torch.randn(6, 6, dtype=torch.float64))
    for cls in methods.METHODS:
        if issubclass(cls, GramianMethod) and not cls.stateful:
            a, b = cls(), cls()
            ctx = RunContext(tasks=("a", "b", "c"))
            a.reset(ctx)
            b.reset(ctx)
            # Same Gramian (rotated parameters): same weights.
            wa = a.weights_from_gramian(j @ j.T, torch.ones(3))
            wb = b.weights_from_gramian((j @ q) @ (j @ q).T, torch.ones(3))
            assert torch.allclose(wa, wb, atol=1e-8), cls.name


def test_seeded_randomness_is_reproducible_and_reset_restarts_it():
    j = random_jacobian(5, 8, 16)
    j[1] = -j[1] * 0.5 + j[0] * -0.5
    for name in ("pcgrad", "graddrop", "gradvac"):
        m = make(name, 5)
        first = [m.aggregate(j) for _ in range(3)]
        m.reset(RunContext(tasks=tuple("abcde"), seed=0))
        again = [m.aggregate(j) for _ in range(3)]
        assert all(torch.equal(x, y) for x, y in zip(first, again, strict=True)), name


@pytest.mark.parametrize("leak", [0.0, 0.3])
def test_graddrop_is_the_papers_sign_mask(leak):
    # Alg. 1: P = ½(1 + Σg/Σ|g|); keep g_i where (P > U and g_i > 0) or (P < U and g_i < 0).
    j = random_jacobian(4, 500, 21)
    j[:, :7] = 0.0  # coordinates no task touches
    m = make("graddrop", 4, leak=leak)
    d = m.aggregate(j)
    import numpy as np

    r = np.random.default_rng(0).random(500, dtype=np.float32)  # the run's seed: 0
    u = 1.0 - torch.from_numpy(r).double()  # U in (0, 1]
    purity = 0.5 * (1 + j.sum(0) / j.abs().sum(0).clamp_min(1e-300))
    mask = ((purity > u) & (j > 0)) | ((purity < u) & (j < 0))
    expected = ((leak + (1 - leak) * mask.double()) * j).sum(0)
    assert torch.allclose(d, expected, rtol=1e-12, atol=1e-15)
    assert torch.equal(d[:7], torch.zeros(7, dtype=torch.float64))
