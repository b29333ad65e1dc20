"""Tasks without labels on some steps: left out of the Jacobian, the weights and the metrics;
per-task present counts; a pair's rates over the steps where both tasks were present."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch

from mtldiag import GradientProbe, methods
from mtldiag.errors import TrainingError
from mtldiag.rundir.load import load_run
from mtldiag.rundir.rebuild import rebuild_summary
from mtldiag.runs.profile import run_profile

from ..conftest import write_spec

USER_CODE = """
import torch
from torch import nn


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.trunk = nn.Linear(4, 4)
        self.heads = nn.ModuleDict({t: nn.Linear(4, 1) for t in "abc"})

    def forward(self, x):
        z = torch.tanh(self.trunk(x))
        return {t: h(z) for t, h in self.heads.items()}


def model():
    torch.manual_seed(0)
    return Net()


def loader(n=6):
    g = torch.Generator().manual_seed(0)
    out = []
    for i in range(n):
        x = torch.randn(8, 4, generator=g)
        y = {t: torch.randn(8, 1, generator=g) for t in "abc"}
        if i % 2 == 1:
            y["c"] = torch.full((8, 1), float("nan"))  # c has no labels on odd batches
        out.append((x, y))
    return out


def losses(model, batch):
    x, y = batch
    out = model(x)
    return {t: None if torch.isnan(y[t]).all() else ((out[t] - y[t]) ** 2).mean() for t in "abc"}
"""


def spec(tmp_path: Path, **keys: object) -> Path:
    (tmp_path / "user.py").write_text(USER_CODE)
    base = {
        "name": "missing",
        "device": "cpu",
        "model": "user.py:model",
        "data": "user.py:loader",
        "tasks": {t: {"loss": "mse"} for t in "abc"},
        "missing": "skip",
        "optimizer": {"name": "sgd", "lr": 0.05},
    }
    return write_spec(tmp_path, {**base, **keys})


@pytest.mark.parametrize("form", ["tasks", "losses"])
@pytest.mark.parametrize("method", ["ew", "mgda"])
def test_task_absent_every_other_step(tmp_path: Path, form: str, method: str) -> None:
    keys = {} if form == "tasks" else {"losses": "user.py:losses", "missing": "error"}
    if form == "losses":
        keys["tasks"] = ["a", "b", "c"]
    res = run_profile(spec(tmp_path, **keys), steps=6, every=1, method=method, out=tmp_path / "r")
    run = res.summary["runs"][0]
    assert run["status"] == "ok"
    assert run["present_steps"] == {"a": 6, "b": 6, "c": 3}
    rows = list(csv.DictReader(open(res.run_dir / "steps.csv", newline="")))
    assert [r["loss/c"] == "" for r in rows] == [False, True] * 3
    assert [r["grad_norm/c"] == "" for r in rows] == [False, True] * 3
    # a pair's rates rest on the steps where both tasks were present
    pairs = list(csv.DictReader(open(res.run_dir / "pairs.csv", newline="")))
    whole = [p for p in pairs if p["layer"] == "*"]
    for a, b, n in (("a", "b", 6), ("a", "c", 3), ("b", "c", 3)):
        cos = [float(p["cosine"]) for p in whole if (p["a"], p["b"]) == (a, b)]
        assert len(cos) == n
        entry = next(e for e in run["pairs"] if (e["a"], e["b"]) == (a, b))
        assert entry["conflict_rate"] == pytest.approx(sum(c < 0 for c in cos) / n)
        assert entry["cosine_mean"] == pytest.approx(sum(cos) / n)
    c_losses = [float(r["loss/c"]) for r in rows if r["loss/c"]]
    assert run["loss_mean"]["c"] == pytest.approx(sum(c_losses) / 3)


def test_absent_task_is_left_out_of_the_jacobian() -> None:
    """The step on {a, b} with c absent equals the step of a probe that only knows a and b."""
    torch.manual_seed(0)
    trunk, heads = torch.nn.Linear(3, 3), torch.nn.ModuleList(torch.nn.Linear(3, 1) for _ in "abc")
    net = torch.nn.ModuleDict({"trunk": trunk, "heads": heads})
    x, y = torch.randn(8, 3), torch.randn(8, 3)

    def task_losses() -> list[torch.Tensor]:
        z = torch.tanh(trunk(x))
        return [((h(z)[:, 0] - y[:, i]) ** 2).mean() for i, h in enumerate(heads)]

    full = GradientProbe(net, every=1, method=methods.create("mgda"))
    la, lb, lc = task_losses()
    full.backward({"a": la, "b": lb, "c": lc})
    net.zero_grad()
    la, lb, _ = task_losses()
    got = full.backward({"a": la, "b": lb, "c": None})
    got_grads = [p.grad.clone() for p in trunk.parameters()]
    net.zero_grad()
    pair = GradientProbe(net, every=1, method=methods.create("mgda"))
    la, lb, _ = task_losses()
    want = pair.backward({"a": la, "b": lb})
    assert got.weights[2] is None and got.losses[2] is None
    assert got.weights[:2] == pytest.approx(want.weights, rel=1e-6)
    assert got.metrics.cosine[0][0] == pytest.approx(want.metrics.cosine[0][0], rel=1e-6)
    assert got.metrics.cosine[0][1:] == [None, None]
    for g, p in zip(got_grads, trunk.parameters(), strict=True):
        torch.testing.assert_close(g, p.grad)


def test_method_with_per_task_state_refuses_an_absent_task() -> None:
    torch.manual_seed(0)
    net = torch.nn.Linear(3, 2)
    probe = GradientProbe(net, shared=["weight"], method=methods.create("nash_mtl"))
    out = net(torch.randn(4, 3))
    probe.backward({"a": out[:, 0].mean(), "b": out[:, 1].pow(2).mean()})
    out = net(torch.randn(4, 3))
    with pytest.raises(TrainingError, match="per-task state"):
        probe.backward({"a": out[:, 0].mean(), "b": None})


def test_rebuilt_summary_reads_empty_cells_as_absent_tasks(tmp_path: Path) -> None:
    res = run_profile(spec(tmp_path), steps=6, every=1, out=tmp_path / "r")
    live = res.summary["runs"][0]
    rebuilt = rebuild_summary(load_run(res.run_dir))["runs"][0]
    assert rebuilt["status"] != "failed"  # an empty loss cell is no divergence
    assert rebuilt["present_steps"] == live["present_steps"] == {"a": 6, "b": 6, "c": 3}
    assert rebuilt["loss_mean"] == pytest.approx(live["loss_mean"])
