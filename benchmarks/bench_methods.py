"""Per-step cost of every balancing method, side by side with LibMTL and TorchJD.

The standard MLP: input 64, shared trunk 4 x Linear(512) + ReLU, 3 heads
Linear(512, 64)-ReLU-Linear(64, out) with out 10 / 1 / 5 (cross-entropy, MSE, cross-entropy),
batch 256, SGD, CPU, 2 threads. Reported per method: median step time over interleaved
repetitions (noisy machines), as a ratio to (a) a plain summed-loss step and (b) the floor —
forward + T ``torch.autograd.grad`` calls, each over the shared parameters and its task's head,
their sums set as ``.grad`` + SGD step (the least a T-pass training step needs; the trunk-only
floor of earlier versions, whose heads never trained, is printed beside it).
Then the T x T solvers alone at T = 16, as a share of a floor step with 16 heads.

    python benchmarks/bench_methods.py            # ~3 minutes
    python benchmarks/bench_methods.py --quick    # ~1 minute, noisier
    python benchmarks/bench_methods.py --only mgda,upgrad --rounds 21

    python benchmarks/bench_methods.py --libmtl ~/src/LibMTL   # LibMTL's newer methods too

Targets (issues 3 and 16): every Jacobian method <= 1.1x floor, every loss weighting <= 1.1x plain
and so M-ConFIG (one task's backward per step, through ``Balancer`` as the others)
(GradNorm excepted: through ``Balancer`` without ``model=``, as here, it takes T extra partial
backward passes to the last shared layer; through the probe or ``Balancer(..., model=)``, which
hook a last ``nn.Linear``, bench_gradnorm.py measures the closed-form norms against 1.2x),
T x T solvers < 5% of the step at T = 16. On a shared machine, 2 OpenMP threads stall whenever
a core is taken: compare ratios, not milliseconds.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
import types
from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from mtldiag import methods
from mtldiag.engine.balancer import Balancer
from mtldiag.methods import GramianMethod, RunContext

OUTS = (10, 1, 5)


class MLP(nn.Module):
    def __init__(self, outs: tuple[int, ...] = OUTS) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        d = 64
        for _ in range(4):
            layers += [nn.Linear(d, 512), nn.ReLU()]
            d = 512
        self.trunk = nn.Sequential(*layers)
        self.heads = nn.ModuleList(
            nn.Sequential(nn.Linear(512, 64), nn.ReLU(), nn.Linear(64, o)) for o in outs
        )

    def losses(
        self, x: torch.Tensor, ys: list[torch.Tensor]
    ) -> tuple[list[torch.Tensor], torch.Tensor]:
        h = self.trunk(x)
        out = []
        for head, y in zip(self.heads, ys, strict=True):
            z = head(h)
            out.append(F.mse_loss(z.squeeze(-1), y) if z.shape[-1] == 1 else F.cross_entropy(z, y))
        return out, h


def batch(outs: tuple[int, ...], seed: int = 0) -> tuple[torch.Tensor, list[torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(256, 64, generator=g)
    ys = [
        torch.randn(256, generator=g) if o == 1 else torch.randint(0, o, (256,), generator=g)
        for o in outs
    ]
    return x, ys


Step = Callable[[], None]


def plain_step(model: MLP, data) -> Step:
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)

    def step() -> None:
        opt.zero_grad()
        losses, _ = model.losses(*data)
        torch.stack(losses).sum().backward()
        opt.step()

    return step


def floor_step(model: MLP, data, heads: bool = True) -> Step:
    """The least a T-pass training step needs: forward, one ``autograd.grad`` per task over the
    shared parameters and that task's head, the summed shared gradients and each head's own as
    ``.grad``, SGD. ``heads=False`` is the floor before issue 15: no head gradient (its heads
    never trained, while every method must train them: ~4% the floor did not pay); it is
    printed beside the other for comparison."""
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    shared = list(model.trunk.parameters())
    own = [list(h.parameters()) if heads else [] for h in model.heads]

    def step() -> None:
        opt.zero_grad()
        losses, _ = model.losses(*data)
        grads = [
            torch.autograd.grad(loss, shared + own[i], retain_graph=i < len(losses) - 1)
            for i, loss in enumerate(losses)
        ]
        for k, p in enumerate(shared):
            total = grads[0][k]  # a fresh tensor from autograd: summed in place
            for g in grads[1:]:
                total.add_(g[k])
            p.grad = total
        for i, params in enumerate(own):  # each head is reached by its own task only
            for p, g in zip(params, grads[i][len(shared) :], strict=True):
                p.grad = g
        opt.step()

    return step


def mtldiag_step(net: MLP, data, name: str, **balancer: Any) -> Step:
    """``name`` through a ``Balancer`` (``balancer``: its keyword options, e.g. ``model=``)."""
    opt = torch.optim.SGD(net.parameters(), lr=1e-3)
    bal = Balancer(
        methods.create(name),
        net.trunk.named_parameters(),
        other_params=list(net.heads.parameters()),
        **balancer,
    )
    names = [f"t{i}" for i in range(len(net.heads))]

    def step() -> None:
        opt.zero_grad()
        losses, _ = net.losses(*data)
        bal.backward(dict(zip(names, losses, strict=True)))
        opt.step()

    step.balancer = bal  # type: ignore[attr-defined]  # for callers that check it
    return step


LIBMTL_TREE: str | None = None  # --libmtl: a LibMTL source tree (its newer methods)


def _libmtl(name: str):
    """Import ``LibMTL.weighting.<name>`` without LibMTL's __init__ (it needs torchvision).

    From ``--libmtl PATH`` (a checkout of LibMTL's GitHub tree, e.g. commit 4336804, which
    has FairGrad, DB-MTL, ExcessMTL, MoCo, MoDo, SDMGrad and STCH) when given, else from the
    installed package (PyPI's 1.1.5 has GLS but none of those).
    """
    import importlib.util

    if "LibMTL" not in sys.modules:
        if LIBMTL_TREE:
            locations = [LIBMTL_TREE.rstrip("/") + "/LibMTL"]
        else:
            try:
                found = importlib.util.find_spec("LibMTL")
            except Exception:
                return None
            if found is None or not found.submodule_search_locations:
                return None
            locations = list(found.submodule_search_locations)
        pkg = types.ModuleType("LibMTL")
        pkg.__path__ = locations
        sys.modules["LibMTL"] = pkg
        wpkg = types.ModuleType("LibMTL.weighting")
        wpkg.__path__ = [p + "/weighting" for p in pkg.__path__]
        sys.modules["LibMTL.weighting"] = wpkg
    try:
        return getattr(__import__(f"LibMTL.weighting.{name}", fromlist=[name]), name)
    except Exception:
        return None


LIBMTL = {
    "pcgrad": ("PCGrad", {}),
    "mgda": ("MGDA", {"mgda_gn": "none"}),
    "cagrad": ("CAGrad", {"calpha": 0.4, "rescale": 1}),
    "gradnorm": ("GradNorm", {"alpha": 1.5}),
    "imtl": ("IMTL", {}),
    "gradvac": ("GradVac", {"beta": 0.01}),
    "dwa": ("DWA", {"T": 2.0}),
    "uncertainty": ("UW", {}),
    "rlw": ("RLW", {"dist": "Normal"}),
    # issue 16 (all but GLS only in LibMTL's GitHub tree: --libmtl PATH)
    "gls": ("GLS", {}),
    "stch": ("STCH", {"STCH_mu": 1.0, "STCH_warmup_epoch": 0}),
    "fairgrad": ("FairGrad", {"FairGrad_alpha": 1.0}),
    "db_mtl": ("DB_MTL", {"DB_beta": 0.9, "DB_beta_sigma": 0.0}),
    "excess_mtl": ("ExcessMTL", {"robust_step_size": 1e-2}),
    "moco": (
        "MoCo",
        {"MoCo_beta": 0.5, "MoCo_beta_sigma": 0.5, "MoCo_gamma": 0.1},
    ),
    "modo": ("MoDo", {"MoDo_gamma": 1e-3, "MoDo_rho": 0.1}),
    "sdmgrad": ("SDMGrad", {"SDMGrad_lamda": 0.3, "SDMGrad_niter": 20}),
}
# LibMTL's MoDo / SDMGrad take a (3, T) stack of losses (three mini-batches); fed this
# step's batch three times, as mtldiag's single-batch form does, they run 3T backward passes.
LIBMTL_THREE_BATCHES = ("modo", "sdmgrad")


def libmtl_step(model: MLP, data, name: str) -> Step | None:
    cls = _libmtl(LIBMTL[name][0])
    if cls is None:
        return None
    kw = dict(LIBMTL[name][1])
    if name == "moco":
        kw.update(MoCo_gamma_sigma=0.5, MoCo_rho=0.0)
    # LibMTL's trainer composes the weighting with an architecture class; MoDo / SDMGrad
    # look for their own name among the bases to keep the graph for their three passes.
    w = type("Composed", (cls,), {})()
    shared = list(model.trunk.parameters())
    w.task_num, w.device, w.rep_grad, w.epoch = len(model.heads), torch.device("cpu"), False, 2
    # Not registered as submodules (the optimizer would see the trunk twice).
    object.__setattr__(w, "encoder", model.trunk)
    object.__setattr__(w, "decoders", {})
    w.get_share_params = lambda: shared

    def zero() -> None:
        for p in shared:
            if p.grad is not None:
                p.grad.zero_()

    w.zero_grad_share_params = zero
    w.train_loss_buffer = torch.ones(len(model.heads), 3).numpy()
    w.init_param()
    if name == "stch":
        w.nadir_vector = torch.ones(len(model.heads))  # past its warm-up: the STCH phase
    params = list(model.parameters()) + list(w.parameters())
    opt = torch.optim.SGD(params, lr=1e-3)
    three = name in LIBMTL_THREE_BATCHES

    def step() -> None:
        opt.zero_grad()
        losses, _ = model.losses(*data)
        stacked = torch.stack(losses)
        w.backward(torch.stack([stacked] * 3) if three else stacked, **kw)
        opt.step()

    try:  # one trial step: a newer LibMTL module may not run against this harness
        step()
    except Exception:
        return None

    return step


TORCHJD = {
    "pcgrad": "PCGrad",
    "mgda": "MGDA",
    "imtl": "IMTLG",
    "upgrad": "UPGrad",
    "cagrad": "CAGrad",
    "nash_mtl": "NashMTL",
    "aligned_mtl": "AlignedMTL",
    "gradvac": "GradVac",
    "graddrop": "GradDrop",
    "dualproj": "DualProj",
    "config": "ConFIG",
}


def torchjd_step(model: MLP, data, name: str) -> Step | None:
    try:
        import torchjd.aggregation as agg
        from torchjd.autojac import jac_to_grad, mtl_backward
    except Exception:
        return None
    cls = getattr(agg, TORCHJD[name], None)
    try:
        if name == "cagrad":
            a = cls(c=0.4)
        elif name == "nash_mtl":
            a = cls(n_tasks=len(model.heads))
        else:
            a = cls()
    except Exception:  # optional dependency (cvxpy, quadprog) missing
        return None
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    shared = list(model.trunk.parameters())

    def step() -> None:
        opt.zero_grad()
        losses, feat = model.losses(*data)
        mtl_backward(losses, features=feat, shared_params=shared)
        jac_to_grad(shared, a)
        opt.step()

    try:  # one trial step: some aggregators fail without their optional deps
        step()
    except Exception:
        return None
    return step


def measure(steps: dict[str, Step], reps: int, inner: int) -> dict[str, float]:
    """Median seconds per step; configurations interleaved within every repetition."""
    for fn in steps.values():  # warm-up
        for _ in range(2):
            fn()
    times: dict[str, list[float]] = {k: [] for k in steps}
    for _ in range(reps):
        for key, fn in steps.items():
            t0 = time.perf_counter()
            for _ in range(inner):
                fn()
            times[key].append((time.perf_counter() - t0) / inner)
    return {k: statistics.median(v) for k, v in times.items()}


def solver_share(reps: int) -> tuple[float, dict[str, float]]:
    """T x T solver time at T = 16 and the floor step with 16 heads."""
    outs = tuple([10, 1, 5] * 6)[:16]
    model = MLP(outs)
    floor = measure({"floor": floor_step(model, batch(outs))}, reps, 1)["floor"]
    g = torch.Generator().manual_seed(0)
    j = torch.randn(16, 2000, generator=g, dtype=torch.float64)
    j[1] = -0.8 * j[0] + 0.3 * j[1]
    gram = j @ j.T
    out = {}
    for cls in methods.METHODS:
        if not issubclass(cls, GramianMethod):
            continue
        m = cls()
        m.reset(RunContext(tasks=tuple(f"t{i}" for i in range(16))))
        m.weights_from_gramian(gram, torch.ones(16))
        ts = []
        for _ in range(max(reps, 5)):
            t0 = time.perf_counter()
            m.weights_from_gramian(gram, torch.ones(16))
            ts.append(time.perf_counter() - t0)
        out[cls.name] = statistics.median(ts)
    return floor, out


def _target(name: str, t: float, plain: float, floor: float) -> str:
    """The issue's targets: weighting and one-task-per-step methods (M-ConFIG: one backward)
    <= 1.1x plain, Jacobian methods <= 1.1x floor."""
    cls = methods.lookup(name)
    if cls.family == "weighting" or cls.tasks_per_step == 1:
        return "ok" if t <= 1.1 * plain else "MISS"
    return "ok" if t <= 1.1 * floor else "MISS"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer repetitions (noisier)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=None, help="interleaved rounds [11; quick 5]")
    ap.add_argument("--only", default=None, help="comma list of mtldiag methods to time")
    ap.add_argument("--libmtl", default=None, help="LibMTL source tree for its newer methods")
    args = ap.parse_args(argv)
    global LIBMTL_TREE
    LIBMTL_TREE = args.libmtl
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    reps, inner = (5, 2) if args.quick else (11, 3)
    reps = args.rounds or reps
    data = batch(OUTS)
    base = MLP()

    def fresh() -> MLP:
        return copy.deepcopy(base)

    steps: dict[str, Step] = {
        "plain": plain_step(fresh(), data),
        "floor": floor_step(fresh(), data),
        "trunk floor": floor_step(fresh(), data, heads=False),
    }
    rows: list[tuple[str, str]] = []
    chosen = args.only.split(",") if args.only else methods.names()
    for name in chosen:
        if name in ("fixed", "anneal", "prior_loss") and not args.only:
            continue  # same cost as ew (constant weights)
        key = f"mtldiag:{name}"
        steps[key] = mtldiag_step(fresh(), data, name)
        rows.append((name, key))
        if name in LIBMTL:
            s = libmtl_step(fresh(), data, name)
            if s is not None:
                steps[f"libmtl:{name}"] = s
        if name in TORCHJD:
            s = torchjd_step(fresh(), data, name)
            if s is not None:
                steps[f"torchjd:{name}"] = s
    med = measure(steps, reps, inner)
    plain, floor = med["plain"], med["floor"]
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"median of {reps} interleaved rounds x {inner} steps"
    )
    trunk = med["trunk floor"]
    print(
        f"plain step {plain * 1e3:.2f} ms; floor (T=3 autograd.grad, heads too) "
        f"{floor * 1e3:.2f} ms = {floor / plain:.2f}x plain; trunk-only floor "
        f"{trunk / plain:.2f}x plain\n"
    )
    print(
        f"{'method':<14}{'family':<10}{'ms':>8}{'/plain':>8}{'/floor':>8}{'/trunk':>8}"
        f"{'target':>8}{'LibMTL /plain':>15}{'TorchJD /plain':>16}"
    )
    for name, key in rows:
        t = med[key]
        fam = methods.lookup(name).family
        lib = med.get(f"libmtl:{name}")
        tj = med.get(f"torchjd:{name}")
        print(
            f"{name:<14}{fam:<10}{t * 1e3:8.2f}{t / plain:8.2f}{t / floor:8.2f}"
            f"{t / trunk:8.2f}{_target(name, t, plain, floor):>8}"
            f"{(f'{lib / plain:.2f}' if lib else '—'):>15}"
            f"{(f'{tj / plain:.2f}' if tj else '—'):>16}"
        )
    floor16, solvers = solver_share(reps)
    print(
        f"\nT = 16: floor step {floor16 * 1e3:.1f} ms; T x T solver alone (% of that step, "
        f"target < 5%):"
    )
    for name, t in solvers.items():
        share = 100 * t / floor16
        print(f"  {name:<14}{t * 1e3:8.3f} ms {share:6.2f}%  {'ok' if share < 5 else 'MISS'}")


if __name__ == "__main__":
    main()
