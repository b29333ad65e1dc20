"""Per-step cost of every Gramian method in representation mode (``--wrt representation``).

The standard MLP of bench_methods.py (64 -> 4 x 512 trunk, 3 heads, batch 256, SGD, CPU, 2
threads). Each step: forward, T ``autograd.grad`` calls w.r.t. the trunk's output z through the
heads only, the method on the T x T Gramian of the flattened (B*F) gradients, one backward of
z with the combined dz through the trunk. Reported: median step time over interleaved rounds
as a ratio to a plain summed-loss step, side by side with LibMTL's ``rep_grad=True`` (which
supports it for MGDA only: its PCGrad and CAGrad raise). Target (issue 15): <= 1.15x plain.

    python benchmarks/bench_representation.py            # ~1 minute
    python benchmarks/bench_representation.py --rounds 21
"""

from __future__ import annotations

import argparse
import copy

import torch
from bench_methods import LIBMTL, MLP, OUTS, Step, _libmtl, batch, floor_step, measure, plain_step

from mtldiag import methods
from mtldiag.engine.balancer import Balancer
from mtldiag.methods import GramianMethod

TARGET = 1.15


def representation_step(model: MLP, data, name: str) -> Step:
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    bal = Balancer(methods.create(name), model.trunk.named_parameters(), model.heads.parameters())
    names = [f"t{i}" for i in range(len(model.heads))]

    def step() -> None:
        opt.zero_grad()
        losses, z = model.losses(*data)
        bal.backward(dict(zip(names, losses, strict=True)), features=z)
        opt.step()

    return step


def libmtl_rep_step(model: MLP, data, name: str) -> Step | None:
    """LibMTL's ``rep_grad=True``: each head reads a detached copy of z (``rep_tasks``); the
    T backward passes stop there; ``rep.backward(sum_i w_i dz_i)`` then runs the trunk once."""
    cls = _libmtl(LIBMTL[name][0])
    if cls is None:
        return None
    w = cls()
    tasks = [f"t{i}" for i in range(len(model.heads))]
    w.task_num, w.task_name, w.device, w.rep_grad = len(tasks), tasks, torch.device("cpu"), True
    w.get_share_params = lambda: list(model.trunk.parameters())
    w.zero_grad_share_params = lambda: None
    w.init_param()
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    x, ys = data

    def step() -> None:
        opt.zero_grad()
        rep = model.trunk(x)
        w.rep = rep
        w.rep_tasks = {t: rep.detach().clone().requires_grad_(True) for t in tasks}
        losses = []
        for t, head, y in zip(tasks, model.heads, ys, strict=True):
            out = head(w.rep_tasks[t])
            losses.append(
                torch.nn.functional.mse_loss(out.squeeze(-1), y)
                if out.shape[-1] == 1
                else torch.nn.functional.cross_entropy(out, y)
            )
        w.backward(torch.stack(losses), **LIBMTL[name][1])
        opt.step()

    try:
        step()
    except ValueError:  # "No support method ... with representation gradients"
        return None
    return step


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=11, help="interleaved rounds")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    data = batch(OUTS)
    base = MLP()

    def fresh() -> MLP:
        return copy.deepcopy(base)

    steps: dict[str, Step] = {
        "plain": plain_step(fresh(), data),
        "floor": floor_step(fresh(), data),
    }
    chosen = [c.name for c in methods.METHODS if issubclass(c, GramianMethod)]
    for name in chosen:
        steps[f"mtldiag:{name}"] = representation_step(fresh(), data, name)
        if name in ("mgda", "pcgrad", "cagrad"):
            s = libmtl_rep_step(fresh(), data, name)
            if s is not None:
                steps[f"libmtl:{name}"] = s
    med = measure(steps, args.rounds, 3)
    plain = med["plain"]
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, median of "
        f"{args.rounds} interleaved rounds x 3 steps; plain step {plain * 1e3:.2f} ms; "
        f"parameter-space floor (T autograd.grad) {med['floor'] / plain:.2f}x plain\n"
    )
    print(f"{'method':<14}{'ms':>8}{'/plain':>8}{'target':>8}{'LibMTL rep_grad /plain':>24}")
    for name in chosen:
        t = med[f"mtldiag:{name}"]
        lib = med.get(f"libmtl:{name}")
        tried = name in ("mgda", "pcgrad", "cagrad")
        libtxt = f"{lib / plain:.2f}" if lib else ("unsupported" if tried else "—")
        ok = "ok" if t <= TARGET * plain else "MISS"
        print(f"{name:<14}{t * 1e3:8.2f}{t / plain:8.2f}{ok:>8}{libtxt:>24}")


if __name__ == "__main__":
    main()
