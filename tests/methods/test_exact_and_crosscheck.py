"""MGDA against an exact QP; every deterministic method against TorchJD / LibMTL."""

from __future__ import annotations

import itertools
import sys
import types

import numpy as np
import pytest
import torch

from mtldiag import methods
from mtldiag.methods import RunContext
from tests.methods._inputs import random_jacobian


def make(name, tasks=3, **hp):
    m = methods.create(name, **hp)
    m.reset(RunContext(tasks=tuple(f"t{i}" for i in range(tasks)), seed=0))
    return m


def exact_min_norm(j: np.ndarray) -> np.ndarray:
    """Enumerate supports; on each, the affine min-norm point by least squares on J."""
    n = len(j)
    best, best_w = np.inf, None
    for r in range(1, n + 1):
        for sub in itertools.combinations(range(n), r):
            sub = list(sub)
            if r == 1:
                alpha = np.ones(1)
            else:
                diff = (j[sub[1:]] - j[sub[0]]).T
                c = np.linalg.lstsq(diff, -j[sub[0]], rcond=None)[0]
                alpha = np.concatenate([[1 - c.sum()], c])
            if np.any(alpha < -1e-12):
                continue
            w = np.zeros(n)
            w[sub] = np.maximum(alpha, 0)
            w /= w.sum()
            val = np.linalg.norm(w @ j)
            if val < best:
                best, best_w = val, w
    return best_w


def hard_jacobians(count: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    for k in range(count):
        t, p = int(rng.integers(2, 7)), int(rng.integers(2, 12))
        kind = k % 3
        if kind == 0:  # ill-conditioned: singular values from 1 to 3e-5
            u, _, vt = np.linalg.svd(rng.normal(size=(t, p)), full_matrices=False)
            j = u @ np.diag(np.logspace(0, -4.5, min(t, p))) @ vt
        elif kind == 1:  # near-antipodal pair
            j = rng.normal(size=(t, p))
            j[1] = -j[0] + 1e-3 * rng.normal(size=p) * np.linalg.norm(j[0]) / np.sqrt(p)
        else:  # task gradients six orders of magnitude apart
            j = rng.normal(size=(t, p)) * np.logspace(-3, 3, t)[:, None]
        yield j


def direction_error(w: np.ndarray, ref: np.ndarray, j: np.ndarray) -> float:
    d, r = w @ j, ref @ j
    if np.linalg.norm(r) < 1e-12 * np.abs(j).max():
        return 0.0 if np.linalg.norm(d) < 1e-9 * np.abs(j).max() else 1.0
    return float(np.linalg.norm(d / np.linalg.norm(d) - r / np.linalg.norm(r)))


def test_mgda_matches_an_exact_qp_on_hard_jacobians_better_than_frank_wolfe():
    misses = {"mtldiag": 0, "torchjd": 0, "libmtl": 0}
    tj = pytest.importorskip("torchjd.aggregation")
    lib = _libmtl_mgda()
    n = 240
    for k, j in enumerate(hard_jacobians(n)):
        ref = exact_min_norm(j)
        g = torch.from_numpy(j @ j.T)
        w = make("mgda", len(j)).weights_from_gramian(g).numpy()
        err = direction_error(w, ref, j)
        assert err < 1e-4, err
        misses["mtldiag"] += err > 1e-3
        w_tj = tj.MGDAWeighting()(g).numpy()
        misses["torchjd"] += direction_error(w_tj, ref, j) > 1e-3
        if lib is not None and k < 18:  # LibMTL's solver is slow: a subsample
            old = torch.get_default_dtype()
            torch.set_default_dtype(torch.float64)  # give its Frank-Wolfe float64 too
            try:
                w_lib = lib._find_min_norm_element(torch.from_numpy(j)).numpy()
            finally:
                torch.set_default_dtype(old)
            misses["libmtl"] += direction_error(w_lib, ref, j) > 1e-3
    print(f"direction misses > 1e-3 over {n} hard Jacobians: {misses}")
    assert misses["mtldiag"] == 0
    assert misses["torchjd"] > n // 40  # Frank-Wolfe's early stop misses on such inputs
    if lib is not None:
        assert misses["libmtl"] > 0


# ---- TorchJD ---------------------------------------------------------------------------


def _cos(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(a @ b / (a.norm() * b.norm()))


@pytest.mark.parametrize("seed", range(10))
def test_torchjd_agreement(seed):
    tj = pytest.importorskip("torchjd.aggregation")
    j = random_jacobian(3 + seed % 3, 10, 200 + seed)
    t = j.shape[0]
    g = j @ j.T
    # Frank-Wolfe is exact on a segment (T = 2: one exact line search); for T >= 3 it is
    # the slow convergence the exactness test above measures.
    j2 = j[:2]
    w_tj = tj.MGDAWeighting(epsilon=1e-12, max_iters=1000)(j2 @ j2.T)
    assert _cos(w_tj @ j2, make("mgda", 2).aggregate(j2)) > 1 - 1e-5
    assert _cos(tj.IMTLGWeighting()(g) @ j, make("imtl", t).aggregate(j)) > 1 - 1e-5
    assert _cos(tj.AlignedMTLWeighting()(g) @ j, make("aligned_mtl", t).aggregate(j)) > 1 - 1e-5


@pytest.mark.parametrize("seed", range(10))
def test_torchjd_agreement_order_dependent_methods_with_two_tasks(seed):
    # With T = 2 the random order cannot matter: PCGrad and GradVac's first step are exact.
    tj = pytest.importorskip("torchjd.aggregation")
    j = random_jacobian(2, 6, 300 + seed)
    g = j @ j.T
    assert _cos(tj.PCGradWeighting()(g) @ j, make("pcgrad", 2).aggregate(j)) > 1 - 1e-5
    gv = tj.GradVacWeighting(beta=0.01)
    ours = make("gradvac", 2)
    for _ in range(3):  # the EMA state evolves identically
        assert _cos(gv(g) @ j, ours.aggregate(j)) > 1 - 1e-5
        j = j + 0.1 * random_jacobian(2, 6, 400 + seed)
        g = j @ j.T


def _torchjd_or_skip(fn):
    """Call ``fn()``; skip when TorchJD's optional solver (quadprog, cvxpy) is not installed."""
    try:
        return fn()
    except ImportError as exc:  # torchjd[full] extras missing
        pytest.skip(str(exc))


@pytest.mark.parametrize("seed", range(10))
def test_torchjd_agreement_upgrad_and_cagrad(seed):
    tj = pytest.importorskip("torchjd.aggregation")
    j = random_jacobian(3 + seed % 3, 10, 200 + seed)
    j[1] = -0.6 * j[0] + 0.5 * j[1]  # a conflict, so the projections are not the identity
    t, g = j.shape[0], j @ j.T
    # TorchJD regularises G by 1e-4 before quadprog: still well inside 1e-5 in cosine.
    w_up = _torchjd_or_skip(lambda: tj.UPGradWeighting()(g))
    assert _cos(w_up @ j, make("upgrad", t).aggregate(j)) > 1 - 1e-5
    w_ca = _torchjd_or_skip(lambda: tj.CAGradWeighting(c=0.4)(g))
    assert _cos(w_ca @ j, make("cagrad", t, c=0.4).aggregate(j)) > 1 - 1e-5


def test_torchjd_agreement_nash_mtl_where_its_solver_converges():
    import warnings

    tj = pytest.importorskip("torchjd.aggregation")
    agree = failed = 0
    for seed in range(12):
        j = random_jacobian(3 + seed % 3, 10, 200 + seed)
        t, g = j.shape[0], j @ j.T
        ours = make("nash_mtl", t, max_norm=0.0)
        w = ours.weights_from_gramian(g)
        # Ours always solves the bargaining equation G α = 1/α (authors' eq. 4) exactly.
        assert torch.allclose(w * (g @ w), torch.ones(t, dtype=torch.float64), atol=1e-8)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # cvxpy's DPP notice
            agg = _torchjd_or_skip(lambda t=t: tj.NashMTL(n_tasks=t, max_norm=0.0))
            d = _torchjd_or_skip(lambda agg=agg, j=j: agg(j.float())).double()
        alpha = torch.linalg.lstsq(j.T, d.unsqueeze(1)).solution.squeeze(1)
        if float((alpha * (g @ alpha) - 1).abs().max()) < 1e-3:  # TorchJD's solve converged
            assert _cos(d, w @ j) > 1 - 1e-5
            agree += 1
        else:  # its ECOS step failed and it kept its initial weights (all ones)
            failed += 1
    print(f"nash_mtl vs TorchJD: {agree} agree, TorchJD's solver failed on {failed}")
    assert agree >= 8


# ---- LibMTL (weighting modules imported directly; the package needs torchvision) ---------


def _libmtl_module(name: str):
    try:
        import LibMTL  # noqa: F401
    except Exception:
        # LibMTL/__init__ imports torchvision: register a bare package to reach submodules.
        spec = __import__("importlib.util").util.find_spec
        try:
            found = spec("LibMTL")
        except Exception:
            return None
        if found is None or not found.submodule_search_locations:
            return None
        pkg = types.ModuleType("LibMTL")
        pkg.__path__ = list(found.submodule_search_locations)
        sys.modules["LibMTL"] = pkg
        wpkg = types.ModuleType("LibMTL.weighting")
        wpkg.__path__ = [p + "/weighting" for p in pkg.__path__]
        sys.modules["LibMTL.weighting"] = wpkg
    try:
        return __import__(f"LibMTL.weighting.{name}", fromlist=[name])
    except Exception:
        return None


class _Harness:
    """Just enough of LibMTL's trainer: one shared vector p, losses L_i = J_i · p."""

    def __init__(self, cls, j: torch.Tensor):
        self.obj = cls()
        self.p = torch.nn.Parameter(torch.zeros(j.shape[1], dtype=torch.float32))
        o = self.obj
        o.task_num, o.device, o.rep_grad = j.shape[0], torch.device("cpu"), False
        o.get_share_params = lambda: [self.p]
        o.zero_grad_share_params = lambda: setattr(self.p, "grad", torch.zeros_like(self.p))
        self.j = j.float()

    def losses(self):
        return self.j @ self.p + 1.0

    def direction(self, **kw) -> torch.Tensor:
        self.p.grad = None
        self.obj.backward(self.losses(), **kw)
        return self.p.grad.detach().double()


def _libmtl_mgda():
    mod = _libmtl_module("MGDA")
    return None if mod is None else mod.MGDA()


@pytest.mark.parametrize("seed", range(8))
def test_libmtl_agreement(seed):
    j = random_jacobian(3, 8, 500 + seed)
    mods = {n: _libmtl_module(n) for n in ("MGDA", "CAGrad", "IMTL", "PCGrad", "GradVac")}
    if any(m is None for m in mods.values()):
        pytest.skip("LibMTL weighting modules not importable")
    d = _Harness(mods["MGDA"].MGDA, j).direction(mgda_gn="none")
    assert _cos(d, make("mgda").aggregate(j)) > 1 - 1e-5
    # LibMTL's CAGrad objective hard-codes T = 3; its SLSQP is the reference here.
    d = _Harness(mods["CAGrad"].CAGrad, j).direction(calpha=0.4, rescale=1)
    assert _cos(d, make("cagrad", c=0.4).aggregate(j)) > 1 - 1e-5
    # LibMTL's IMTL is the hybrid IMTL-G + IMTL-L; with zero loss scales (its start) the
    # gradient part is IMTL-G on the raw gradients.
    h = _Harness(mods["IMTL"].IMTL, j)
    h.obj.init_param()
    assert _cos(h.direction(), make("imtl").aggregate(j)) > 1 - 1e-5


@pytest.mark.parametrize("seed", range(5))
def test_libmtl_two_task_surgery_agreement(seed):
    mods = {n: _libmtl_module(n) for n in ("PCGrad", "GradVac")}
    if any(m is None for m in mods.values()):
        pytest.skip("LibMTL weighting modules not importable")
    j = random_jacobian(2, 6, 600 + seed)
    j[1] = -0.7 * j[0] + 0.5 * j[1]  # conflicting
    d = _Harness(mods["PCGrad"].PCGrad, j).direction()
    assert _cos(d, make("pcgrad", 2).aggregate(j)) > 1 - 1e-5
    # First step from a zero EMA target: LibMTL and the paper coincide.
    d = _Harness(mods["GradVac"].GradVac, j).direction(beta=0.01)
    assert _cos(d, make("gradvac", 2).aggregate(j)) > 1 - 1e-5


def test_libmtl_dwa_weights():
    mod = _libmtl_module("DWA")
    if mod is None:
        pytest.skip("LibMTL not importable")
    obj = mod.DWA()
    obj.task_num, obj.device, obj.rep_grad, obj.epoch = 3, torch.device("cpu"), False, 2
    hist = np.array([[3.0, 2.0], [1.0, 0.9], [5.0, 2.5]])
    obj.train_loss_buffer = hist
    p = torch.nn.Parameter(torch.zeros(1))
    theirs = obj.backward(torch.ones(3) * p.sum() + 1, T=2.0)
    m = make("dwa")
    for col in range(2):
        m.update(torch.tensor(hist[:, col]), col)
    ours = m.weights(torch.ones(3), 2)
    assert np.allclose(theirs, ours.numpy(), atol=1e-6)
