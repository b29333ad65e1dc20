"""How much does instrumentation cost? Ratios measured side by side in one run.

Model: the standard MLP (input 64, trunk 4 x 512 ReLU shared, heads 512-64-out with out
10/1/5), batch 256, SGD, CPU, 2 threads. Each configuration runs whole training loops through
mtldiag's own trainer (records written to a temporary run directory, as a user gets them);
the reference loops are written plainly here. Rounds are interleaved and the median of the
per-round means is reported, because this machine is noisy.

    floor        forward + T x torch.autograd.grad over the shared parameters, their sum
                 set as .grad, + SGD step
    plain        forward + backward of the summed loss + SGD step (no instrumentation)
    every=1      mtldiag, every step instrumented (Jacobian, Gramians, metrics, CSV rows)
    every=10     mtldiag, one step in ten instrumented

Targets (issue 2): every=1 / floor <= 1.15, every=10 / plain <= 1.3.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from mtldiag import methods
from mtldiag.rundir.writer import RunWriter
from mtldiag.runs.build import BatchCycle, move_to
from mtldiag.runs.train import prepare, train_run
from mtldiag.spec import parse_spec

SPEC = {
    "name": "bench",
    "device": "cpu",
    "model": {"factory": "mtldiag.examples.mlp:build_model"},
    "data": {"factory": "mtldiag.examples.mlp:build_loader", "kwargs": {"batch_size": 256}},
    "tasks": {
        "cls": {"loss": "cross_entropy"},
        "reg": {"loss": "mse"},
        "aux": {"loss": "bce_with_logits"},
    },
    "optimizer": {"name": "sgd", "lr": 0.01},
}


def _sync(device: torch.device) -> None:
    """On a GPU the clock must wait for the queued kernels (the trainer times with events)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _loop_floor(prep, steps: int, plain: bool) -> float:
    params = [p for p in prep.model.parameters() if p.requires_grad]
    shared = list(prep.selection.layout.params)
    opt = torch.optim.SGD(params, lr=0.01)
    batches = BatchCycle(prep.loader, 0)
    _sync(prep.device)
    t0 = time.perf_counter()
    for _ in range(steps):
        x, y = move_to(next(batches), prep.device)
        opt.zero_grad(set_to_none=True)
        out = prep.model(x)
        losses = [
            torch.nn.functional.cross_entropy(out["cls"], y["cls"]),
            torch.nn.functional.mse_loss(out["reg"], y["reg"]),
            torch.nn.functional.binary_cross_entropy_with_logits(out["aux"], y["aux"]),
        ]
        if plain:
            sum(losses).backward()
        else:
            grads = [
                torch.autograd.grad(loss, shared, retain_graph=i < len(losses) - 1)
                for i, loss in enumerate(losses)
            ]
            # The least an update needs: the summed task gradients as .grad, so that the
            # optimizer step does real work (with .grad None, SGD would skip every parameter).
            for k, p in enumerate(shared):
                p.grad = grads[0][k] + grads[1][k] + grads[2][k]
        opt.step()
    _sync(prep.device)
    return (time.perf_counter() - t0) / steps * 1e3


def _loop_mtldiag(prep, steps: int, every: int, out: Path) -> float:
    writer = RunWriter(out, prep.tasks)
    writer.open("{}", {})
    _sync(prep.device)
    t0 = time.perf_counter()
    train_run(prep, methods.create("ew"), "ew", steps, every, writer=writer, stats={})
    _sync(prep.device)
    ms = (time.perf_counter() - t0) / steps * 1e3
    writer.close()
    return ms


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--quick", action="store_true", help="2 rounds of 10 steps")
    parser.add_argument("--device", default="cpu", help="cpu | cuda (the trainer's own step)")
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.steps = 2, 10
    torch.set_num_threads(2)
    spec = parse_spec({**SPEC, "device": args.device})
    prep = prepare(spec, 0, torch.device(args.device))
    results: dict[str, list[float]] = {"floor": [], "plain": [], "every=1": [], "every=10": []}
    with tempfile.TemporaryDirectory() as tmp:
        # One warm-up pass of each, then interleaved rounds.
        for r in range(args.rounds + 1):
            timings = {
                "floor": _loop_floor(prep, args.steps, plain=False),
                "plain": _loop_floor(prep, args.steps, plain=True),
                "every=1": _loop_mtldiag(prep, args.steps, 1, Path(tmp) / f"e1-{r}"),
                "every=10": _loop_mtldiag(prep, args.steps, 10, Path(tmp) / f"e10-{r}"),
            }
            if r == 0:
                continue
            for k, v in timings.items():
                results[k].append(v)
    med = {k: statistics.median(v) for k, v in results.items()}
    print(
        f"standard MLP, T=3, batch 256, {args.device}, {torch.get_num_threads()} threads, "
        f"{args.rounds} rounds x {args.steps} steps (median of round means)"
    )
    for k, v in med.items():
        print(f"  {k:10s} {v:8.2f} ms/step")
    r1 = med["every=1"] / med["floor"]
    r10 = med["every=10"] / med["plain"]
    print(f"every=1  / floor = {r1:.3f}   (target <= 1.15) {'OK' if r1 <= 1.15 else 'MISS'}")
    print(f"every=10 / plain = {r10:.3f}   (target <= 1.30) {'OK' if r10 <= 1.3 else 'MISS'}")
    print(f"floor    / plain = {med['floor'] / med['plain']:.3f}   (for orientation)")


if __name__ == "__main__":
    main()
