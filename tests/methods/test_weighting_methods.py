"""Loss-weighting methods: the formulas of their papers and seeds, and their state."""

from __future__ import annotations

import math

import pytest
import torch

from mtldiag import methods
from mtldiag.methods import RunContext, TaskStats


def make(name, tasks=("a", "b", "c"), seed=0, stats=None, **hp):
    m = methods.create(name, **hp)
    m.reset(RunContext(tasks=tuple(tasks), seed=seed, task_stats=stats or {}))
    return m


def test_init_loss_from_first_batches_and_from_theory():
    m = make("init_loss", batches=2)
    assert m.weights(torch.tensor([2.0, 4.0, 8.0]), 0).tolist() == [0.5, 0.25, 0.125]
    w = m.weights(torch.tensor([4.0, 4.0, 8.0]), 1)  # mean of the first two steps: 3, 4, 8
    assert torch.allclose(w, torch.tensor([1 / 3, 1 / 4, 1 / 8]))
    assert torch.allclose(m.weights(torch.tensor([100.0, 1.0, 1.0]), 2), w)  # frozen
    ks = dict(zip("abc", (2, 10, 100), strict=True))
    stats = {t: TaskStats(theory_initial_loss=math.log(k)) for t, k in ks.items()}
    th = make("init_loss", stats=stats, source="theory", normalize=True)
    w = th.weights(torch.ones(3), 0)
    assert float(w.sum()) == pytest.approx(3.0)
    assert float(w[0] / w[2]) == pytest.approx(math.log(100) / math.log(2))


def test_realtime_weights_are_reciprocal_losses():
    w = make("realtime").weights(torch.tensor([0.5, 2.0, 0.0]), 0)
    assert w[:2].tolist() == [2.0, 0.5] and math.isfinite(float(w[2]))


def test_anneal_linear_ramp():
    m = make("anneal", schedules={"b": {"from": 0, "to": 1, "start": 100, "end": 500}})
    assert [float(m.weights(torch.ones(3), s)[1]) for s in (0, 100, 300, 500, 900)] == [
        0.0,
        0.0,
        0.5,
        1.0,
        1.0,
    ]
    assert float(m.weights(torch.ones(3), 300)[0]) == 1.0


@pytest.mark.parametrize("variant", ["log", "log1p"])
def test_uncertainty_weights_reach_their_optimum(variant):
    m = make("uncertainty", variant=variant, lr=0.05)
    losses = torch.tensor([0.5, 2.0, 8.0])
    assert m.weights(losses, 0).tolist() == [1.0, 1.0, 1.0]
    for s in range(3000):
        m.update(losses, s)
    w = m.weights(losses, 3000).double()
    if variant == "log":  # d/ds [e^-s L + s] = 0  =>  w = 1/L
        assert torch.allclose(w, 1.0 / losses.double(), rtol=1e-3)
    else:  # e^-s L = 2 sigmoid(s)  =>  w L = 2 σ²/(1+σ²) < 2
        sig2 = 1.0 / w
        assert torch.allclose(w * losses, 2 * sig2 / (1 + sig2), rtol=1e-3)


def test_gradnorm_gradient_and_renormalisation():
    m = make("gradnorm")
    l0 = torch.tensor([1.0, 1.0, 1.0])
    m.update(l0, 0, torch.tensor([1.0, 1.0, 1.0]))  # records L(0); equal norms: no pull
    assert torch.allclose(m.weights(l0, 1).double(), torch.ones(3, dtype=torch.float64))
    losses, norms = torch.tensor([1.0, 0.5, 0.25]), torch.tensor([2.0, 1.0, 1.0])
    g = m.gradient(losses, norms)
    # G = w * norms = (2, 1, 1), mean 4/3; r = L̃/mean(L̃) = (12/7, 6/7, 3/7); target = 4/3 r^1.5
    r = torch.tensor([12 / 7, 6 / 7, 3 / 7], dtype=torch.float64)
    target = 4 / 3 * r**1.5
    expected = torch.sign(torch.tensor([2.0, 1.0, 1.0], dtype=torch.float64) - target) * norms
    assert torch.equal(g, expected.double())
    m.update(losses, 1, norms)
    w = m.weights(losses, 2).double()
    assert float(w.sum()) == pytest.approx(3.0) and (w > 0).all()
    # Task 0 learns slowest (G=2 < target 2.99): its weight rises; task 2 (G=1 > 0.37) drops.
    assert w[0] > 1.0 > w[2]


def test_dwa_formula_any_number_of_tasks():
    m = make("dwa", tasks=("a", "b", "c", "d"))
    hist = [torch.tensor([1.0, 1.0, 2.0, 4.0]), torch.tensor([0.5, 1.0, 1.0, 4.0])]
    assert m.weights(torch.ones(4), 0).tolist() == [1.0] * 4
    for s, h in enumerate(hist):
        m.update(h, s)
    r = torch.tensor([0.5, 1.0, 0.5, 1.0], dtype=torch.float64)
    expected = 4 * torch.softmax(r / 2.0, 0)
    assert torch.allclose(m.weights(torch.ones(4), 2).double(), expected)


def test_rlw_is_seeded_and_on_the_sum_scale():
    a, b, c = make("rlw", seed=3), make("rlw", seed=3), make("rlw", seed=4)
    wa = [a.weights(torch.ones(3), s) for s in range(5)]
    wb = [b.weights(torch.ones(3), s) for s in range(5)]
    wc = [c.weights(torch.ones(3), s) for s in range(5)]
    assert all(torch.equal(x, y) for x, y in zip(wa, wb, strict=True))
    assert not torch.equal(wa[0], wc[0])
    assert all(float(w.sum()) == pytest.approx(3.0, rel=1e-6) for w in wa)
    assert not torch.equal(wa[0], wa[1])


def test_famo_weights_and_logit_update():
    m = make("famo")
    losses = torch.tensor([1.0, 2.0, 4.0])
    w = m.weights(losses, 0).double()
    # z uniform: w_i = T z_i / (c L_i) with c = sum z_i / L_i  ->  proportional to 1/L
    inv = 1.0 / losses.double()
    assert torch.allclose(w, 3 * inv / inv.sum())
    m.update(losses, 0)
    # Task 0's loss halves, the others stay: task 0 improved most, its logit must fall.
    m.weights(torch.tensor([0.5, 2.0, 4.0]), 1)
    assert m.logits[0] < m.logits[1] and m.logits[1] == pytest.approx(float(m.logits[2]))
    before = m.logits.clone()
    m.weights(torch.tensor([0.5, 2.0, 4.0]), 1)  # same step again: no second update
    assert torch.equal(before, m.logits)


def test_reset_forgets_learned_state():
    m = make("uncertainty")
    for s in range(50):
        m.update(torch.tensor([5.0, 5.0, 5.0]), s)
    assert not torch.allclose(m.weights(torch.ones(3), 50), torch.ones(3))
    m.reset(RunContext(tasks=("a", "b", "c")))
    assert torch.equal(m.weights(torch.ones(3), 0), torch.ones(3))


WEIGHTING = [c.name for c in methods.METHODS if c.family == "weighting"]
HP = {
    "fixed": {"weights": {"a": 1.0, "b": 2.0, "c": 0.5}},
    "anneal": {"schedules": {"a": {"from": 0, "to": 1, "start": 0, "end": 4}}},
}
STATS = {
    t: TaskStats(prior_loss=v, theory_initial_loss=v)
    for t, v in zip("abc", (1e-8, 1.0, 1e8), strict=True)
}


@pytest.mark.parametrize("name", WEIGHTING)
def test_degenerate_losses_give_finite_non_negative_weights(name):
    m = make(name, stats=STATS, **HP.get(name, {}))
    for step, losses in enumerate(
        [
            torch.tensor([0.0, 1e-8, 1e8]),
            torch.tensor([1e8, 0.0, 1.0]),
            torch.tensor([1.0, 1.0, 1.0]),
        ]
    ):
        w = m.weights(losses, step)
        assert w.shape == (3,) and torch.isfinite(w).all() and (w >= 0).all(), (name, w)
        m.update(losses, step, torch.tensor([0.0, 1e-8, 1e8]))
