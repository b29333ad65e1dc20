"""Identical starting weights and data order across compared runs."""

import torch

from mtldiag.build import BatchCycle
from mtldiag.compare import plan_runs
from mtldiag.spec import MethodSpec, parse_spec
from mtldiag.train import prepare

from .conftest import SYNTHETIC


def _params(model):
    return [p.detach().clone() for p in model.parameters()]


def test_runs_with_one_seed_start_from_same_weights_and_see_same_batches():
    spec = parse_spec(SYNTHETIC)
    dev = torch.device("cpu")
    first = prepare(spec, 3, dev)
    torch.rand(1000)  # a method (or dropout) drawing from the global RNG in between
    second = prepare(spec, 3, dev, shared=first.selection)
    for p, q in zip(_params(first.model), _params(second.model), strict=True):
        assert torch.equal(p, q)
    a, b = BatchCycle(first.loader, 3), BatchCycle(second.loader, 3)
    for _ in range(10):  # beyond one epoch of 4 batches: reshuffled identically
        xa, _ = next(a)
        torch.rand(10)
        xb, _ = next(b)
        assert torch.equal(xa, xb)
    other = prepare(spec, 4, dev)
    assert not all(torch.equal(p, q) for p, q in
                   zip(_params(first.model), _params(other.model), strict=True))  # fmt: skip


def test_plan_covers_methods_seeds_sweeps_and_single_task_runs():
    plan = plan_runs([MethodSpec("ew"), MethodSpec("cagrad", {"c": 0.4})], [0, 1], ["a", "b"],
                     single_task=True, sweep_weights=[[0.25, 0.75]])  # fmt: skip
    labels = [(r.label, r.seed) for r in plan]
    assert labels[:5] == [("ew", 0), ("cagrad:c=0.4", 0), ("sweep:0.25,0.75", 0),
                          ("single:a", 0), ("single:b", 0)]  # fmt: skip
    assert len(plan) == 10
    sweep = plan[2].method
    assert sweep.name == "fixed" and sweep.hparams == {"weights": {"a": 0.25, "b": 0.75}}
    assert plan[3].tasks == ("a",)
