"""The user's training setup in the loop: LR schedule (the lr column), clipping, parameter
groups, gradient accumulation, fp16 loss scaling and bf16, each against a closed form or
torch's own result."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch

from mtldiag import methods
from mtldiag.runs.profile import run_profile
from mtldiag.runs.train import prepare, train_run
from mtldiag.spec import load_spec

from ..conftest import write_spec

USER_CODE = """
import torch
from torch import nn


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.trunk = nn.Linear(4, 4)
        self.a = nn.Linear(4, 1)
        self.b = nn.Linear(4, 1)

    def forward(self, x):
        z = torch.tanh(self.trunk(x))
        return {"a": self.a(z), "b": self.b(z)}


def model():
    torch.manual_seed(0)
    return Net()


def loader(n=4, huge_at=-1):
    g = torch.Generator().manual_seed(0)
    out = []
    for i in range(n):
        x = torch.randn(8, 4, generator=g)
        y = {"a": torch.randn(8, 1, generator=g), "b": torch.randn(8, 1, generator=g)}
        if i == huge_at:  # finite loss in fp32, gradients beyond fp16's range
            y["a"] = y["a"] * 1e3
        out.append((x, y))
    return out


def groups(model, head_lr):
    heads = [*model.a.parameters(), *model.b.parameters()]
    return torch.optim.SGD(
        [{"params": model.trunk.parameters(), "lr": 0.0}, {"params": heads, "lr": head_lr}]
    )
"""

BASE = {
    "name": "options",
    "device": "cpu",
    "model": "user.py:model",
    "data": {"factory": "user.py:loader"},
    "tasks": {"a": {"loss": "mse"}, "b": {"loss": "mse"}},
    "optimizer": {"name": "SGD", "lr": 0.1},
}


def spec_file(tmp_path: Path, **keys: object) -> Path:
    (tmp_path / "user.py").write_text(USER_CODE)
    return write_spec(tmp_path, {**BASE, **keys})


def rows(run_dir: Path) -> list[dict[str, str]]:
    with open(run_dir / "steps.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_lr_column_is_torchs_warmup_then_cosine(tmp_path: Path) -> None:
    warm = {"name": "LinearLR", "start_factor": 0.25, "total_iters": 3}
    cos = {"name": "CosineAnnealingLR", "T_max": 5}
    sched = {"name": "sequentiallr", "schedulers": [warm, cos], "milestones": [3]}
    res = run_profile(spec_file(tmp_path, scheduler=sched), steps=8, out=tmp_path / "run")
    got = [float(r["lr"]) for r in rows(res.run_dir)]

    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
    ref = torch.optim.lr_scheduler
    torch_sched = ref.SequentialLR(
        opt,
        [ref.LinearLR(opt, start_factor=0.25, total_iters=3), ref.CosineAnnealingLR(opt, 5)],
        milestones=[3],
    )
    want = []
    for _ in range(8):
        want.append(opt.param_groups[0]["lr"])
        opt.step()
        torch_sched.step()
    assert got == pytest.approx(want, rel=1e-12)
    assert got[0] == pytest.approx(0.025) and len(set(got)) > 4


def test_epoch_interval_steps_once_per_loader_pass(tmp_path: Path) -> None:
    sched = {"name": "StepLR", "step_size": 1, "gamma": 0.5, "interval": "epoch"}
    res = run_profile(spec_file(tmp_path, scheduler=sched), steps=9, out=tmp_path / "run")
    got = [float(r["lr"]) for r in rows(res.run_dir)]
    assert got == pytest.approx([0.1] * 4 + [0.05] * 4 + [0.025])  # 4 batches a pass


def _one_step(path: Path) -> tuple[torch.Tensor, dict]:
    """The parameter change of one plain-EW step (SGD lr 1) and the run's summary entry."""
    prep = prepare(load_spec(path), 0, torch.device("cpu"))
    before = torch.cat([p.detach().reshape(-1).clone() for p in prep.model.parameters()])
    run = train_run(prep, methods.create("ew"), "ew", 1, 1)
    after = torch.cat([p.detach().reshape(-1) for p in prep.model.parameters()])
    return after - before, run


def test_clip_grad_norm_bounds_the_update_and_keeps_raw_norms(tmp_path: Path) -> None:
    sgd = {"name": "sgd", "lr": 1.0}
    delta, run = _one_step(spec_file(tmp_path, optimizer=sgd, clip_grad_norm="1e-3"))
    assert float(delta.norm()) == pytest.approx(1e-3, rel=1e-3)
    assert min(run["grad_norm_mean"].values()) > 0.1  # recorded norms are the raw ones


def test_fp16_clipping_acts_on_the_unscaled_update(tmp_path: Path) -> None:
    sgd = {"name": "sgd", "lr": 1.0}
    path = spec_file(tmp_path, optimizer=sgd, clip_grad_norm=1e-3, precision="fp16")
    delta, run = _one_step(path)
    assert run["skipped_steps"] == 0
    assert float(delta.norm()) == pytest.approx(1e-3, rel=1e-3)  # not 1e-3 / 65536


def test_clip_grad_value_bounds_every_coordinate(tmp_path: Path) -> None:
    sgd = {"name": "sgd", "lr": 1.0}
    delta, _ = _one_step(spec_file(tmp_path, optimizer=sgd, clip_grad_value=1e-4))
    assert float(delta.abs().max()) == pytest.approx(1e-4, rel=1e-3)  # float32 weights: Δ to ~3e-8


def test_parameter_group_factory_trains_the_heads_only(tmp_path: Path) -> None:
    opt = {"factory": "user.py:groups", "kwargs": {"head_lr": 0.5}}
    prep = prepare(load_spec(spec_file(tmp_path, optimizer=opt)), 0, torch.device("cpu"))
    trunk = prep.model.trunk.weight.detach().clone()
    head = prep.model.a.weight.detach().clone()
    train_run(prep, methods.create("uncertainty"), "uw", 2, 1)
    assert torch.equal(prep.model.trunk.weight, trunk)
    assert not torch.equal(prep.model.a.weight, head)


def test_accumulated_step_logs_the_mean_of_its_micro_batches(tmp_path: Path) -> None:
    frozen = {"name": "sgd", "lr": 0.0}  # lr 0: every batch sees the same weights
    one = run_profile(spec_file(tmp_path, optimizer=frozen), steps=4, out=tmp_path / "k1")
    two = run_profile(
        spec_file(tmp_path, optimizer=frozen, accumulate=2), steps=2, out=tmp_path / "k2"
    )
    r1, r2 = rows(one.run_dir), rows(two.run_dir)
    assert len(r2) == 2
    for j, row in enumerate(r2):
        for t in "ab":
            pair = [float(r1[2 * j + i][f"loss/{t}"]) for i in range(2)]
            assert float(row[f"loss/{t}"]) == pytest.approx(sum(pair) / 2, rel=1e-6)


@pytest.mark.parametrize("every", [1, 0])
def test_fp16_overflow_step_is_skipped_and_counted(tmp_path: Path, every: int) -> None:
    data = {"factory": "user.py:loader", "kwargs": {"huge_at": 1}}
    path = spec_file(tmp_path, precision="fp16", data=data)
    res = run_profile(path, steps=4, every=every, out=tmp_path / "run")
    run = res.summary["runs"][0]
    assert run["status"] == "ok" and run["skipped_steps"] == 1
    assert run["instrumented_steps"] == (3 if every else 0)  # the skipped step has no metrics


def test_bf16_trains_without_a_scaler(tmp_path: Path) -> None:
    res = run_profile(spec_file(tmp_path, precision="bf16"), steps=3, out=tmp_path / "run")
    run = res.summary["runs"][0]
    assert run["status"] == "ok" and "skipped_steps" not in run
    assert run["instrumented_steps"] == 3
