"""The one key scheme: names, which steps carry which keys, the running conflict rate."""

from __future__ import annotations

import pytest
import torch
from mlflow.utils.validation import _validate_metric_name

from mtldiag import GradientProbe
from mtldiag.examples.synthetic import build_loader, build_model
from mtldiag.trackers.base import ConflictCounter, pair_key, safe_name, step_scalars

from .conftest import PAIRS, TASKS


def _probe_steps(n: int, every: int = 2):
    torch.manual_seed(0)
    model, loader = build_model(), build_loader()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    probe = GradientProbe(model, every=every)
    out = []
    for _, (x, y) in zip(range(n), loader, strict=False):
        opt.zero_grad()
        pred = model(x)
        step = probe.backward({t: torch.nn.functional.mse_loss(pred[t], y[t]) for t in TASKS})
        opt.step()
        out.append((probe, step))
    return out


def test_probe_scalars_keys_on_instrumented_and_plain_steps():
    (probe, first), (_, second) = _probe_steps(2)
    keys = set(probe.scalars(first))
    layers = [layer for layer in first.metrics.layers if layer != "*"]
    assert layers  # the synthetic trunk has one shared layer: `encoder`
    expected = (
        {f"loss/{t}" for t in TASKS}
        | {f"weight/{t}" for t in TASKS}
        | {f"grad_norm/{t}" for t in TASKS}
        | {f"{k}/{p}" for k in ("cosine", "gms", "conflict_rate") for p in PAIRS}
        | {f"cosine/{p}/{layer}" for p in PAIRS for layer in layers}
    )
    assert keys == expected
    # A plain step has losses (and weights) only.
    assert set(probe.scalars(second)) == {f"loss/{t}" for t in TASKS} | {
        f"weight/{t}" for t in TASKS
    }
    assert probe.scalars(first)["loss/a"] == pytest.approx(first.losses[0])


def test_probe_scalars_cosine_is_the_step_metric():
    (probe, first), _ = _probe_steps(2)
    flat = probe.scalars(first)
    whole = first.metrics.layers.index("*")
    assert flat["cosine/a-vs-b"] == pytest.approx(first.metrics.cosine[whole][0])
    assert flat["cosine/a-vs-b"] < 0  # the synthetic problem is built with cos(a, b) = -0.5


def test_running_conflict_rate_counts_negative_cosines():
    counter = ConflictCounter()
    assert counter.update([-0.5, 0.2]) == [1.0, 0.0]
    assert counter.update([0.1, 0.3]) == [0.5, 0.0]
    assert counter.update([-0.1, -0.2]) == pytest.approx([2 / 3, 1 / 3])


def test_time_and_lr_when_known():
    (_, first), _ = _probe_steps(2)
    flat = step_scalars(first, TASKS, time_ms=12.5, lr=0.01)
    assert flat["step_time_ms"] == 12.5 and flat["lr"] == 0.01
    assert "step_time_ms" not in step_scalars(first, TASKS)


def test_every_key_is_a_legal_mlflow_metric_name():
    (_, first), _ = _probe_steps(2)
    odd_tasks = ["seg|mask", "depth,m", "x/y"]
    for key in step_scalars(first, odd_tasks, ConflictCounter(), time_ms=1.0, lr=0.1):
        _validate_metric_name(key)  # MLflow's own check raises on | and ,
    assert pair_key("seg|mask", "depth,m") == "seg_mask-vs-depth_m"
    assert safe_name("x/y") == "x_y"  # a slash would add a level to the key
