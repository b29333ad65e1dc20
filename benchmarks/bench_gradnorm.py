"""GradNorm's plain step against a plain summed-loss step: same process, interleaved rounds.

The standard MLP of bench_methods.py (64 -> 4 x 512 trunk, 3 heads, batch 256, SGD, CPU), run
through :class:`~mtldiag.engine.probe.GradientProbe` (``every=0``: plain steps only) so that
the probe installs its hook on the last shared ``nn.Linear``, and through
:class:`~mtldiag.engine.balancer.Balancer` (a user's loop). Five steps side by side:

* ``plain``: forward, one backward of the summed losses, SGD;
* ``exact``: GradNorm with the hook removed (one partial ``autograd.grad`` per task on the last
  shared layer, then the plain backward: the path before issue 15);
* ``closed``: GradNorm with the hook (T head passes, norms from ``<G G^T, X X^T>``, one trunk
  backward; :mod:`mtldiag.engine.linear_norms`);
* ``balancer exact``: GradNorm through ``Balancer(method, trunk.named_parameters(), heads)``
  (no model given: the partial passes);
* ``balancer closed``: the same with ``model=model`` (the hook, as the probe's).

Reported: each round's ratio to that round's plain step (median and range), 1 thread by
default (2 OpenMP threads on a shared machine stall whenever a core is taken). Target
(issue 15): closed <= 1.2x plain, through the probe and the Balancer.

    python benchmarks/bench_gradnorm.py               # ~1 minute
    python benchmarks/bench_gradnorm.py --rounds 31 --threads 2
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from bench_methods import MLP, OUTS, Step, batch, mtldiag_step, plain_step

from mtldiag import methods
from mtldiag.engine.probe import GradientProbe

TARGET = 1.2


def gradnorm_step(model: MLP, data, closed: bool) -> Step:
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    probe = GradientProbe(model, every=0, method=methods.create("gradnorm"))
    names = [f"t{i}" for i in range(len(model.heads))]

    def step() -> None:
        opt.zero_grad()
        losses, _ = model.losses(*data)
        probe.backward(dict(zip(names, losses, strict=True)))
        if not closed and probe.capture is not None:
            probe.capture.remove()  # the exact partial-grad path from now on
            probe.capture = None
        opt.step()

    return step


def balancer_step(model: MLP, data, closed: bool) -> Step:
    """GradNorm through ``Balancer``: with ``model=`` (the closed form) or without."""
    step = mtldiag_step(model, data, "gradnorm", model=model if closed else None)
    assert (step.balancer.capture is not None) is closed  # type: ignore[attr-defined]
    return step


def rounds(steps: dict[str, Step], reps: int, inner: int) -> dict[str, list[float]]:
    """Seconds per step of each configuration in each round (interleaved within a round)."""
    for fn in steps.values():  # warm-up (the probe's setup on the first call)
        for _ in range(3):
            fn()
    times: dict[str, list[float]] = {k: [] for k in steps}
    for _ in range(reps):
        for key, fn in steps.items():
            t0 = time.perf_counter()
            for _ in range(inner):
                fn()
            times[key].append((time.perf_counter() - t0) / inner)
    return times


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=21)
    ap.add_argument("--inner", type=int, default=5, help="steps per configuration per round")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    data = batch(OUTS)
    steps = {
        "plain": plain_step(MLP(), data),
        "exact": gradnorm_step(MLP(), data, closed=False),
        "closed": gradnorm_step(MLP(), data, closed=True),
        "balancer exact": balancer_step(MLP(), data, closed=False),
        "balancer closed": balancer_step(MLP(), data, closed=True),
    }
    times = rounds(steps, args.rounds, args.inner)
    plain = times["plain"]
    print(
        f"{args.threads} thread(s), {args.rounds} interleaved rounds x {args.inner} steps; "
        f"plain step {statistics.median(plain) * 1e3:.2f} ms (median)"
    )
    for key in ("exact", "closed", "balancer exact", "balancer closed"):
        ratios = [t / p for t, p in zip(times[key], plain, strict=True)]
        med = statistics.median(ratios)
        mark = "" if "exact" in key else ("  ok" if med <= TARGET else f"  > {TARGET}")
        label = key if key.startswith("balancer") else f"probe {key}"
        print(
            f"gradnorm {label:15s} / plain: {med:.3f} "
            f"(rounds {min(ratios):.3f}-{max(ratios):.3f}){mark}"
        )


if __name__ == "__main__":
    main()
