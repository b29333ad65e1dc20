"""Issue 16's methods: parsing, hand-worked cases, the properties their papers claim, and
cross-checks against TorchJD, ``conflictfree`` and LibMTL-generated reference numbers."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from mtldiag import methods
from mtldiag.methods import MethodError, RunContext
from tests.methods._inputs import random_jacobian

NEW = ["gls", "stch", "dualproj", "config", "fairgrad", "sdmgrad", "modo", "moco", "db_mtl"]
NEW += ["excess_mtl", "rgw"]
FIXTURE = Path(__file__).parent / "fixtures" / "libmtl_reference.json"


def make(spec: str, tasks: int = 3, seed: int = 0):
    ms = methods.parse_method(spec)
    m = methods.create(ms.name, **ms.hparams)
    m.reset(RunContext(tasks=tuple(f"t{i}" for i in range(tasks)), seed=seed))
    return m


def direction(m, j: torch.Tensor, losses: torch.Tensor, step: int = 0) -> torch.Tensor:
    """The shared update of one step, whatever the family (weights @ J for a weighting)."""
    if m.family == "weighting":
        w = m.weights(losses, step)
        m.update(losses, step)
        return w.to(j) @ j
    return m.aggregate(j, losses)


def cos(a, b):
    return float(a @ b / (a.norm() * b.norm()))


def conflicting(t: int, p: int, seed: int) -> torch.Tensor:
    j = random_jacobian(t, p, seed)
    j[1] = -0.7 * j[0] + 0.4 * j[1]
    return j


# ---- registry and parsing ----------------------------------------------------------------


def test_all_33_methods_are_registered_with_paper_and_summary():
    rows = {r.name: r for r in methods.describe()}
    assert len(rows) == 33 and set(NEW) <= set(rows)
    for name in NEW:
        assert rows[name].paper and rows[name].summary, name
    defaults = {n: {h.name: h.default for h in rows[n].hyperparams} for n in NEW}
    assert defaults["fairgrad"] == {"alpha": 1.0}
    assert defaults["sdmgrad"]["lamda"] == 0.3 and defaults["sdmgrad"]["niter"] == 20
    assert defaults["modo"]["gamma"] == 1e-3 and defaults["modo"]["rho"] == 0.1
    assert defaults["moco"]["beta"] == 0.5 and defaults["moco"]["gamma"] == 0.1
    assert defaults["db_mtl"] == {"beta": 0.9, "beta_sigma": 0.0}
    assert defaults["excess_mtl"] == {"robust_step_size": 1e-2}
    assert defaults["stch"]["mu"] == 1.0
    # The single-batch form is said where `mtldiag methods` shows it.
    assert "single-batch" in rows["modo"].summary and "single-batch" in rows["sdmgrad"].summary
    assert rows["gls"].family == rows["stch"].family == "weighting"
    assert all(rows[n].family == "gradient" for n in NEW[2:])


@pytest.mark.parametrize(
    ("spec", "attr", "value"),
    [
        ("fairgrad:alpha=2", "alpha", 2.0),
        ("sdmgrad:lamda=0.5,solver=sgd", "solver", "sgd"),
        ("modo:gamma=0.01", "gamma", 0.01),
        ("moco:weights_update=softmax", "weights_update", "softmax"),
        ("db_mtl:beta=0.5", "beta", 0.5),
        ("excess_mtl:robust_step_size=0.1", "robust_step_size", 0.1),
        ("stch:mu=0.5,warmup=10", "warmup", 10),
        ("gls:reduction=mean", "reduction", "mean"),
        ("dualproj:reduction=mean", "reduction", "mean"),
        ("config:reduction=mean", "reduction", "mean"),
        ("rgw:normalize=true", "normalize", True),
        ("FairGrad", "alpha", 1.0),
        ("DB-MTL", "beta", 0.9),
    ],
)
def test_parse_with_hyperparameters(spec, attr, value):
    m = methods.parse(spec)
    assert getattr(m, attr) == value
    assert repr(m).startswith(type(m).__name__ + "(")


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("fairgrad:alpha=0", "Parameter `alpha` should be a positive float. Found `alpha = 0`."),
        ("stch:mu=-1", "Parameter `mu` should be a positive float."),
        ("sdmgrad:solver=adam", "Parameter `solver` should be one of exact | sgd."),
        ("moco:beta=2", "Parameter `beta` should be a float in [0, 1]."),
        ("modo:foo=1", "Method 'modo' has no hyper-parameter `foo`."),
    ],
)
def test_bad_hyperparameters_are_one_sentence(spec, message):
    with pytest.raises(MethodError) as info:
        methods.parse(spec)
    assert str(info.value).startswith(message)


# ---- hand-worked cases and paper properties -----------------------------------------------


def test_dualproj_by_hand():
    # g1 = (1, 0), g2 = (-2, 1): the sum (-1, 1) conflicts with task 1; its projection onto
    # {x1 >= 0, x2 >= 2 x1} is (0, 1).
    j = torch.tensor([[1.0, 0.0], [-2.0, 1.0]], dtype=torch.float64)
    assert torch.allclose(make("dualproj", 2).aggregate(j), torch.tensor([0.0, 1.0]).double())
    assert torch.allclose(
        make("dualproj:reduction=mean", 2).aggregate(j), torch.tensor([0.0, 0.5]).double()
    )
    # No conflict: the sum itself.
    j2 = torch.tensor([[1.0, 0.2], [0.3, 1.0]], dtype=torch.float64)
    assert torch.allclose(make("dualproj", 2).aggregate(j2), j2.sum(0))


@pytest.mark.parametrize("seed", range(8))
def test_dualproj_is_the_euclidean_projection_of_the_sum(seed):
    # KKT of min ||d - sum g||² s.t. Jd >= 0: d = sum g + Jᵀμ, μ >= 0, μ ∘ Jd = 0.
    j = conflicting(4, 7, seed)
    w = make("dualproj", 4).weights_from_gramian(j @ j.T)
    d, mu = w @ j, w - 1.0
    assert (j @ d >= -1e-10).all() and (mu >= -1e-12).all()
    assert float((mu * (j @ d)).abs().max()) < 1e-9


def test_config_by_hand_and_equal_cosines():
    # g1 = e1, g2 = 2 e2: x = (1, 1), length (1 + 2)/sqrt 2 along x/||x||: d = (1.5, 1.5).
    j = torch.tensor([[1.0, 0.0], [0.0, 2.0]], dtype=torch.float64)
    assert torch.allclose(make("config", 2).aggregate(j), torch.tensor([1.5, 1.5]).double())
    # Identical gradients: EW's sum.
    g = random_jacobian(1, 5, 0)
    assert torch.allclose(make("config").aggregate(g.repeat(3, 1)), 3 * g[0])
    # Independent gradients: the same cosine with every task (hence no conflict), any scales.
    for seed in range(6):
        j = conflicting(4, 9, 10 + seed) * torch.tensor([[1e-3], [1.0], [10.0], [1e3]]).double()
        d = make("config", 4).aggregate(j)
        cosines = (j @ d) / (j.norm(dim=1) * d.norm())
        assert torch.allclose(cosines, cosines[0].expand(4), rtol=1e-9) and cosines[0] > 0


def test_fairgrad_alpha_one_is_nash_mtl_and_the_limits():
    j = random_jacobian(3, 8, 21)
    g = j @ j.T
    w1 = make("fairgrad:alpha=1").weights_from_gramian(g)
    nash = make("nash_mtl:max_norm=0").weights_from_gramian(g)
    assert torch.allclose(w1, nash, rtol=1e-8)
    for alpha in (0.5, 2.0, 5.0):  # the defining equation, to a residual of 1e-8
        w = make(f"fairgrad:alpha={alpha}").weights_from_gramian(g)
        assert float((w ** (1 / alpha) * (g @ w) - 1).abs().max()) < 1e-8
    # α -> ∞: equal gains g_iᵀd; α -> 0: the direction of EW.
    w_big = make("fairgrad:alpha=1000").weights_from_gramian(g)
    gains = g @ w_big
    assert float(gains.max() / gains.min()) < 1.01
    w_small = make("fairgrad:alpha=0.01").weights_from_gramian(g)
    assert cos(w_small @ j, j.sum(0)) > 0.999


def test_fairgrad_exact_solver_meets_the_residual_where_least_squares_misses():
    # LibMTL / the authors: scipy.optimize.least_squares(G w - w^(-1/α), w0 = 1/T, w >= 0)
    # with its default tolerances. On ill-conditioned Gramians it stops short of the
    # equation; mtldiag's Newton meets max_i |w_i^(1/α) (Gw)_i - 1| < 1e-8 every time.
    from scipy.optimize import least_squares

    rng = np.random.default_rng(0)
    ours = theirs = total = 0
    for _ in range(40):
        t, p = int(rng.integers(3, 7)), int(rng.integers(7, 12))
        u, _, vt = np.linalg.svd(rng.normal(size=(t, p)), full_matrices=False)
        j = u @ np.diag(np.logspace(0, -3, t)) @ vt  # condition number of G: 1e6
        j = j * np.sign(j.sum(axis=1))[:, None]
        g = j @ j.T
        for alpha in (1.0, 2.0):
            total += 1
            w = make(f"fairgrad:alpha={alpha}", t).weights_from_gramian(torch.from_numpy(g))
            w = w.numpy()
            ours += float(np.max(np.abs(w ** (1 / alpha) * (g @ w) - 1))) < 1e-8
            x = least_squares(
                lambda x, g=g, a=alpha: g @ x - np.power(1 / x, 1 / a),
                np.full(t, 1.0 / t),
                bounds=(0, np.inf),
            ).x
            theirs += float(np.max(np.abs(x ** (1 / alpha) * (g @ x) - 1))) < 1e-8
    assert ours == total
    assert theirs <= total - total // 10, (theirs, total)


def test_fairgrad_keeps_the_previous_weights_when_there_is_no_solution():
    m = make("fairgrad", 2)
    good = random_jacobian(2, 4, 0)
    w_good = m.weights_from_gramian(good @ good.T)
    bad = torch.stack([good[0], -good[0]])
    assert torch.equal(m.weights_from_gramian(bad @ bad.T), w_good)
    assert "no solution on 1 of 2 steps" in m.warnings[0]


def test_sdmgrad_exact_is_the_regularised_min_norm_point():
    j = conflicting(4, 6, 31)
    g = j @ j.T
    # λ = 0: MGDA (same sum scale).
    w0 = make("sdmgrad:lamda=0", 4).weights_from_gramian(g)
    assert torch.allclose(w0 @ j, make("mgda", 4).aggregate(j), atol=1e-9)
    # KKT of min_{w in simplex} ½||g_w + λ g0||²: (G w + λ G1/T)_i >= μ, equality on support.
    lam = 0.3
    m = make("sdmgrad:reduction=mean", 4)
    out = m.weights_from_gramian(g).numpy()
    w = out * (1 + lam) - lam / 4
    assert abs(w.sum() - 1) < 1e-9 and (w >= -1e-12).all()
    grad = g.numpy() @ w + lam * g.numpy().mean(axis=1)
    mu = grad[w > 1e-9].mean()
    assert (grad >= mu - 1e-9).all() and np.allclose(grad[w > 1e-9], mu, atol=1e-9)
    # Large λ: EW.
    big = make("sdmgrad:lamda=1e6", 4).aggregate(j)
    assert torch.allclose(big, j.sum(0), rtol=1e-4)


def test_sdmgrad_exact_reaches_a_lower_objective_than_the_inner_sgd():
    rng = np.random.default_rng(3)
    better = 0
    for _ in range(10):
        j = torch.from_numpy(rng.normal(size=(4, 6)) * np.logspace(-1, 1, 4)[:, None])
        g = (j @ j.T).numpy()

        def objective(out, g=g):
            w = out * 1.3 - 0.3 / 4  # undo d = (g_w + λ g0)/(1 + λ), mean reduction
            return 0.5 * w @ g @ w + 0.3 * w @ g.mean(axis=1)

        exact = make("sdmgrad:reduction=mean", 4).weights_from_gramian(torch.from_numpy(g))
        sgd = make("sdmgrad:reduction=mean,solver=sgd", 4).weights_from_gramian(torch.from_numpy(g))
        assert objective(exact.numpy()) <= objective(sgd.numpy()) + 1e-12
        better += objective(exact.numpy()) < objective(sgd.numpy()) - 1e-6
    assert better > 0


def test_modo_first_step_by_hand_and_its_fixed_point():
    # T = 2: λ = Π_Δ(½ - γ(G ½ + ρ ½)); the simplex projection of (a, b) is
    # ((1 + a - b)/2, (1 - a + b)/2) clipped to [0, 1].
    j = torch.tensor([[1.0, 0.0], [-0.5, 2.0]], dtype=torch.float64)
    g = (j @ j.T).numpy()
    gamma, rho = 0.1, 0.1
    a, b = 0.5 - gamma * (g @ [0.5, 0.5] + rho * 0.5)
    l1 = min(max((1 + a - b) / 2, 0.0), 1.0)
    m = make(f"modo:gamma={gamma},rho={rho},reduction=mean", 2)
    assert torch.allclose(m.aggregate(j), torch.tensor([l1, 1 - l1]).double() @ j)
    # Iterated on a fixed G, λ converges to argmin_{simplex} ½ λᵀ(G + ρI)λ: MGDA on G + ρI.
    j3 = conflicting(3, 5, 41)
    g3 = j3 @ j3.T
    m = make("modo:gamma=0.05,rho=0.1,reduction=mean")
    for _ in range(3000):
        w = m.weights_from_gramian(g3)
    ref = make("mgda:reduction=mean").weights_from_gramian(g3 + 0.1 * torch.eye(3).double())
    assert torch.allclose(w, ref, atol=1e-8)


def test_moco_tracks_the_gradients_and_reaches_no_conflict_on_a_fixed_jacobian():
    j = conflicting(3, 6, 51)
    losses = torch.tensor([1.0, 2.0, 0.5], dtype=torch.float64)
    m = make("moco:normalize=false")
    d1 = m.aggregate(j, losses)
    # Step 1: y = β j (β_1 = 0.5), λ = Π(1/3 - γ YYᵀ 1/3).
    assert torch.allclose(m._y, 0.5 * j)
    for _ in range(2000):
        d = m.aggregate(j, losses)
    assert not torch.allclose(d1, d)
    assert torch.allclose(m._y, j, atol=1e-6)  # the tracked gradients reach J
    assert (j @ d >= -1e-3 * float(j.norm()) ** 2).all()  # MGDA-like: no task loses


def test_db_mtl_balances_magnitudes_and_ignores_loss_scales():
    j = random_jacobian(3, 6, 61) * torch.tensor([[1e-2], [1.0], [1e2]]).double()
    losses = torch.tensor([0.1, 1.0, 10.0], dtype=torch.float64)
    m = make("db_mtl")
    d = m.aggregate(j, losses)
    buf = 0.1 * j / (losses[:, None] + 1e-8)  # step 1 of the EMA from 0: (1 - β) ∇log L
    norms = buf.norm(dim=1)
    assert torch.allclose(d, (norms.max() / norms) @ buf, rtol=1e-12)
    # Every task contributes with the largest norm. And rescaling a loss by c (its gradient
    # too) leaves ∇log L, hence d, unchanged.
    c = torch.tensor([100.0, 1.0, 0.01], dtype=torch.float64)
    d2 = make("db_mtl").aggregate(j * c[:, None], losses * c)
    assert torch.allclose(d, d2, rtol=1e-6)


def test_excess_mtl_starts_as_ew_and_raises_the_task_with_larger_excess_risk():
    j = random_jacobian(3, 6, 71)
    m = make("excess_mtl:robust_step_size=0.5")
    assert torch.allclose(m.aggregate(j), j.sum(0))
    big = j.clone()
    big[2] *= 3.0  # task 2's excess-risk estimate grows relative to its first one
    m.aggregate(big)
    w = m.task_weights
    assert float(w.sum()) == pytest.approx(3.0) and int(w.argmax()) == 2


def test_gls_is_the_geometric_mean_gradient():
    losses = torch.tensor([0.5, 2.0, 8.0], dtype=torch.float64)
    w = make("gls").weights(losses, 0)
    gm = float(losses.prod() ** (1 / 3))
    assert torch.allclose(w, gm / losses)
    assert torch.allclose(make("gls:reduction=mean").weights(losses, 0), gm / (3 * losses))
    # Autograd of (prod L)^(1/T) agrees with the mean-reduction weights.
    x = losses.clone().requires_grad_(True)
    (x.prod() ** (1 / 3)).backward()
    assert torch.allclose(x.grad, gm / (3 * losses))
    assert torch.isfinite(make("gls").weights(torch.tensor([0.0, 1e-8, 1e8]), 0)).all()


def test_stch_warmup_nadir_and_the_smooth_max():
    m = make("stch:mu=0.01,warmup=5")
    seen = [torch.tensor([2.0, 1.0, 4.0]) * (1 + 0.1 * k) for k in range(5)]
    for k, ls in enumerate(seen):
        w = m.weights(ls.double(), k)
        assert torch.allclose(w, 1.0 / ls.double())  # warm-up: Σ log L
        m.update(ls.double(), k)
    now = torch.tensor([2.0, 3.0, 4.0], dtype=torch.float64)  # task 1 is worst vs its nadir
    w = m.weights(now, 5)
    assert torch.allclose(m.nadir, seen[4].double())  # the last fifth of 5 steps: step 4
    assert torch.allclose(w * now, torch.tensor([0.0, 3.0, 0.0]).double(), atol=1e-6)
    # μ large: the softmax flattens to 1/T, weights T (1/T) / L = 1 / L.
    w = make("stch:mu=1e6,warmup=0").weights(now, 0)
    assert torch.allclose(w, 1.0 / now, rtol=1e-5)


def test_rgw_draws_seeded_weights_whose_mean_is_ew():
    j = random_jacobian(3, 5, 81)
    a, b = make("rgw", seed=7), make("rgw", seed=7)
    assert torch.equal(a.aggregate(j), b.aggregate(j))
    m = make("rgw", seed=1)
    mean = sum(m.aggregate(j) for _ in range(4000)) / 4000
    assert cos(mean, j.sum(0)) > 0.999
    n = make("rgw:normalize=true", seed=7)
    w = make("rgw", seed=7).draw(3)
    unit = j / j.norm(dim=1, keepdim=True)
    assert torch.allclose(n.aggregate(j), (w * j.norm(dim=1).mean()) @ unit)


@pytest.mark.parametrize("name", ["gls", "stch"])
@pytest.mark.parametrize("scale", [0.0, 1e-8, 1.0, 1e8])
def test_weightings_are_finite_on_degenerate_losses(name, scale):
    m = make(f"{name}:warmup=1" if name == "stch" else name)
    for step in range(3):
        ls = torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64) * scale
        w = m.weights(ls, step)
        m.update(ls, step)
        assert torch.isfinite(w).all()


# ---- cross-checks -----------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(8))
def test_dualproj_agrees_with_torchjd(seed):
    tj = pytest.importorskip("torchjd.aggregation")
    j = conflicting(3 + seed % 3, 10, 900 + seed)
    try:
        theirs = tj.DualProj()(j)
    except ImportError as exc:
        pytest.skip(str(exc))
    ours = make("dualproj:reduction=mean", j.shape[0]).aggregate(j)
    # TorchJD adds 1e-4 to the normalised Gramian's diagonal before quadprog (a shift of a
    # few 1e-3 in length); mtldiag's answer meets the projection's KKT conditions exactly
    # (test_dualproj_is_the_euclidean_projection_of_the_sum).
    assert cos(theirs, ours) > 1 - 1e-5
    assert float((theirs - ours).norm() / ours.norm()) < 1e-2


@pytest.mark.parametrize("seed", range(8))
def test_config_agrees_with_conflictfree_and_torchjd(seed):
    j = conflicting(2 + seed % 4, 12, 1000 + seed) * (10.0 ** (seed % 3 - 1))
    ours = make("config", j.shape[0]).aggregate(j)
    cf = pytest.importorskip("conflictfree.grad_operator")
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)  # its weight vector is made in the default dtype
    try:
        theirs = cf.ConFIG_update(j)
    finally:
        torch.set_default_dtype(old)
    assert torch.allclose(theirs, ours, rtol=1e-8, atol=1e-12 * float(j.abs().max()))
    tj = pytest.importorskip("torchjd.aggregation")
    assert torch.allclose(tj.ConFIG()(j), ours, rtol=1e-6)


def _reference():
    return json.loads(FIXTURE.read_text())


@pytest.mark.parametrize("label", list(_reference()["methods"]))
def test_matches_libmtl_reference_numbers(label):
    # LibMTL at commit 4336804 (the only public code for DB-MTL, ExcessMTL, MoCo, MoDo,
    # SDMGrad, STCH, FairGrad as a weighting) was run once, in float64, on the fixture's
    # inputs; the numbers are kept, not its code. MoDo / SDMGrad were fed one batch 3 times.
    ref = _reference()
    entry = ref["methods"][label]
    jacs = [torch.tensor(x, dtype=torch.float64) for x in ref["jacobians"]]
    losses = [torch.tensor(x, dtype=torch.float64) for x in ref["losses"]]
    if label.startswith("stch"):
        # LibMTL: warm-up epoch 0 (two steps, averaged into the nadir), STCH from epoch 1.
        # mtldiag: warmup=10 steps, the nadir from their last fifth (steps 8, 9).
        m = make(label + ",warmup=10" if ":" in label else label + ":warmup=10", ref["T"])
        for k in range(8):  # the log-loss steps before the averaged ones leave no state
            direction(m, jacs[0], losses[0], k)
        steps = range(8, 8 + len(jacs))
    else:
        m = make(label, ref["T"])
        steps = range(len(jacs))
    for k, step in enumerate(steps):
        d = direction(m, jacs[k], losses[k], step)
        theirs = torch.tensor(entry["directions"][k], dtype=torch.float64)
        err = float((d - theirs).norm() / theirs.norm())
        # FairGrad: LibMTL's least_squares stops at its own tolerance. Elsewhere the only
        # differences are the 1e-8 guards LibMTL adds to norms (||g|| + 1e-8), ~1e-8 here.
        tol = 2e-4 if label.startswith("fairgrad") else 1e-7
        assert err < tol, (label, k, err)


def test_new_gramian_methods_appear_in_the_preview(tmp_path, monkeypatch):
    import mtldiag.report as report
    from tests.methods.test_end_to_end import profile_cli

    monkeypatch.setattr(report, "write_report", lambda *a, **k: None)
    res, out = profile_cli(tmp_path, "--method", "dualproj", "--preview")
    assert res.exit_code == 0, res.output
    rows = {
        r["method"]: r for r in json.loads((out / "summary.json").read_text())["preview"]["methods"]
    }
    assert {"dualproj", "config", "fairgrad", "sdmgrad", "modo"} <= set(rows)
    # DualProj never conflicts: every task's mean gain is >= 0 (0 where a constraint binds,
    # which the preview's strict all_decrease does not count).
    assert all(v >= -1e-9 for v in rows["dualproj"]["gain_mean"].values())
    assert math.isfinite(rows["config"]["all_decrease_rate"])


# ---- preference vectors (UPGrad, DualProj) ----------------------------------------------

PREFS = [2.0, 0.5, 1.0]


def _pref(values) -> str:
    return "{" + ", ".join(f"t{i}: {v}" for i, v in enumerate(values)) + "}"


@pytest.mark.parametrize("seed", range(6))
def test_preference_vectors_agree_with_torchjd(seed):
    tj = pytest.importorskip("torchjd.aggregation")
    j = conflicting(3, 10, 1300 + seed)
    p = torch.tensor(PREFS, dtype=j.dtype)
    try:
        up_theirs = tj.UPGrad(pref_vector=p)(j)
        dp_theirs = tj.DualProj(pref_vector=p)(j)
    except ImportError as exc:
        pytest.skip(str(exc))
    up = make(f"upgrad:preference={_pref(PREFS)}").aggregate(j)
    dp = make(f"dualproj:preference={_pref(PREFS)}").aggregate(j)
    # TorchJD's quadprog runs on a regularised Gramian (see the DualProj cross-check above).
    for theirs, ours in ((up_theirs, up), (dp_theirs, dp)):
        assert cos(theirs, ours) > 1 - 1e-5
        assert float((theirs - ours).norm() / ours.norm()) < 1e-2


def test_upgrad_preference_weights_each_projected_gradient():
    # A cone projection is positively homogeneous: UPGrad(p) = sum_i p_i UPGrad(e_i), and
    # UPGrad(e_k) is the projection of g_k alone; p = 1 is the default.
    j = conflicting(3, 12, 77)
    one_hot = [make(f"upgrad:preference={_pref(np.eye(3)[k])}").aggregate(j) for k in range(3)]
    combined = sum(p * d for p, d in zip(PREFS, one_hot, strict=True))
    ours = make(f"upgrad:preference={_pref(PREFS)}").aggregate(j)
    assert torch.allclose(ours, combined, rtol=1e-6, atol=1e-9)
    ones = make(f"upgrad:preference={_pref([1, 1, 1])}").aggregate(j)
    assert torch.allclose(ones, make("upgrad").aggregate(j), rtol=1e-9, atol=1e-12)
    assert (j @ ours >= -1e-9).all()  # still conflicts with no task


def test_dualproj_preference_projects_the_weighted_sum():
    j = conflicting(3, 12, 78)
    p = torch.tensor(PREFS, dtype=j.dtype)
    d = make(f"dualproj:preference={_pref(PREFS)}").aggregate(j)
    assert (j @ d >= -1e-9).all()
    # KKT of min ||d - Jᵀp||² s.t. J d >= 0: d - Jᵀp = Jᵀμ with μ >= 0, μ_i (J d)_i = 0
    mu = torch.linalg.lstsq(j.T, (d - p @ j).unsqueeze(1)).solution.squeeze(1)
    assert (mu >= -1e-7).all()
    assert torch.allclose(mu * (j @ d), torch.zeros(3, dtype=j.dtype), atol=1e-7)


@pytest.mark.parametrize(
    ("spec", "fragment"),
    [
        ("upgrad:preference={t0: 1, t1: 1}", "no entry for task 't2'"),
        ("dualproj:preference={t0: 1, t1: 1, t2: 1, tx: 1}", "unknown task 'tx'"),
        ("upgrad:preference={t0: 0, t1: 0, t2: 0}", "at least one positive weight"),
        ("dualproj:preference={t0: -1, t1: 1, t2: 1}", "preference.t0"),
    ],
)
def test_bad_preference_vectors_name_the_problem(spec, fragment):
    with pytest.raises(MethodError, match=re.escape(fragment)):
        make(spec)


def test_a_preference_vector_refuses_a_step_without_one_tasks_labels():
    from mtldiag.engine.missing import present_method
    from mtldiag.errors import TrainingError

    losses = torch.ones(3)
    plain = make("upgrad")
    assert present_method(plain, [0, 2], losses, ["t0", "t1", "t2"]) is plain
    with pytest.raises(TrainingError, match="cannot leave out task"):
        present_method(
            make(f"upgrad:preference={_pref(PREFS)}"), [0, 2], losses, ["t0", "t1", "t2"]
        )
