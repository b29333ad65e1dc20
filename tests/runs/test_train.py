"""The training loop end to end on the synthetic problem: records, reproducibility, failures."""

import csv
import json
from pathlib import Path

import pytest

from mtldiag.errors import Interrupted, TrainingError, UserCodeError
from mtldiag.runs.profile import run_profile
from mtldiag.spec import parse_spec

from ..conftest import SYNTHETIC

USER_CODE = """
import torch
from torch import nn

class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.trunk = nn.Linear(3, 3)
        self.a = nn.Linear(3, 1)
        self.b = nn.Linear(3, 1)
    def forward(self, x):
        z = self.trunk(x)
        return {"a": self.a(z), "b": self.b(z)}

def model():
    torch.manual_seed(0)
    return Net()

def boom():
    raise RuntimeError("cannot open weights.bin")

def loader(n=4, bad_step=-1):
    g = torch.Generator().manual_seed(0)
    batches = []
    for i in range(n):
        x = torch.randn(8, 3, generator=g)
        y = {"a": torch.randn(8, 1, generator=g), "b": torch.randn(8, 1, generator=g)}
        if i == bad_step:
            y["b"] = y["b"] * float("nan")
        batches.append((x, y))
    return batches

def empty():
    return []

def vector_losses(model, batch):
    x, y = batch
    out = model(x)
    return {"a": ((out["a"] - y["a"]) ** 2).mean(), "b": (out["b"] - y["b"]) ** 2}

class Stop:
    def __init__(self, at):
        self.at, self.n = at, 0
    def __call__(self, model, batch):
        self.n += 1
        if self.n > self.at:
            raise KeyboardInterrupt
        x, y = batch
        out = model(x)
        return {"a": ((out["a"] - y["a"]) ** 2).mean(), "b": ((out["b"] - y["b"]) ** 2).mean()}

stop_after_3 = Stop(3)
"""


def user_spec(tmp_path: Path, **over):
    (tmp_path / "user.py").write_text(USER_CODE)
    data = {
        "name": "user",
        "device": "cpu",
        "model": "user.py:model",
        "data": {"factory": "user.py:loader"},
        "tasks": {"a": {"loss": "mse"}, "b": {"loss": "mse"}},
        "optimizer": {"name": "sgd", "lr": 0.1},
        "profile": {"steps": 5},
    }
    data.update(over)
    return parse_spec(data, "spec.yaml", path=tmp_path / "spec.yaml")


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_profile_writes_run_directory_and_summary(tmp_path: Path):
    spec = parse_spec(SYNTHETIC, path=tmp_path / "s.yaml")
    res = run_profile(spec, out=tmp_path / "run", steps=6, every=2)
    run_dir = tmp_path / "run"
    assert {"spec.yaml", "env.json", "steps.csv", "pairs.csv", "summary.json"} <= {
        p.name for p in run_dir.iterdir()
    }
    steps = read_csv(run_dir / "steps.csv")
    assert [r["instrumented"] for r in steps] == ["1", "0", "1", "0", "1", "0"]
    assert steps[1]["grad_norm/a"] == "" and float(steps[0]["grad_norm/a"]) > 0
    pairs = read_csv(run_dir / "pairs.csv")
    assert len(pairs) == 3 * 3 * 2  # instrumented steps x pairs x (all + 1 layer)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["schema"] == "mtldiag.summary/1"
    assert summary["tasks"] == ["a", "b", "c"] and summary["layers"] == ["encoder"]
    run = summary["runs"][0]
    assert run["steps"] == 6 and run["instrumented_steps"] == 3
    ab = run["pairs"][0]
    assert (ab["a"], ab["b"]) == ("a", "b") and "encoder" in ab["layers"]
    assert res.summary["runs"][0]["final_loss"].keys() == {"a", "b", "c"}
    codes = {d["code"] for d in summary["diagnosis"]}
    assert {"loss_scale_imbalance", "grad_norm_dominance", "directional_conflict"} <= codes


def test_first_step_cosine_and_norm_ratio_match_the_construction(tmp_path: Path):
    spec = parse_spec(SYNTHETIC, path=tmp_path / "s.yaml")
    run_profile(spec, out=tmp_path / "run", steps=1)
    pairs = read_csv(tmp_path / "run" / "pairs.csv")
    ab = next(r for r in pairs if r["a"] == "a" and r["b"] == "b" and r["layer"] == "*")
    assert abs(float(ab["cosine"]) + 0.5) < 1e-4
    row = read_csv(tmp_path / "run" / "steps.csv")[0]
    assert abs(float(row["grad_norm/a"]) / float(row["grad_norm/b"]) - 10.0) < 1e-3


def test_same_spec_and_seed_give_identical_steps(tmp_path: Path):
    spec = parse_spec(SYNTHETIC, path=tmp_path / "s.yaml")
    cols = ["loss/a", "loss/b", "loss/c", "grad_norm/a", "weight/b"]
    runs = []
    for k in range(2):
        run_profile(spec, out=tmp_path / f"r{k}", steps=8, every=3)
        runs.append([[r[c] for c in cols] for r in read_csv(tmp_path / f"r{k}" / "steps.csv")])
    assert runs[0] == runs[1]
    run_profile(spec, out=tmp_path / "other", steps=8, every=3, seed=5)
    other = [[r[c] for c in cols] for r in read_csv(tmp_path / "other" / "steps.csv")]
    assert other != runs[0]


def test_short_loader_is_cycled(tmp_path: Path):
    spec = user_spec(tmp_path)  # 4 batches
    res = run_profile(spec, out=tmp_path / "run", steps=10)
    assert res.summary["runs"][0]["steps"] == 10


def test_nan_loss_stops_with_task_and_step_and_keeps_records(tmp_path: Path):
    spec = user_spec(tmp_path, data={"factory": "user.py:loader", "kwargs": {"bad_step": 2}})
    with pytest.raises(TrainingError) as err:
        run_profile(spec, out=tmp_path / "run", steps=5)
    assert "task 'b'" in err.value.message and "step 2" in err.value.message
    assert str(tmp_path / "run") in err.value.message
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["status"] == "failed" and summary["runs"][0]["status"] == "failed"
    assert len(read_csv(tmp_path / "run" / "steps.csv")) == 3  # steps 0, 1 and the NaN one


def test_ctrl_c_keeps_summary_of_steps_done(tmp_path: Path):
    spec = user_spec(tmp_path, losses="user.py:stop_after_3", tasks=["a", "b"])
    with pytest.raises(Interrupted) as err:
        run_profile(spec, out=tmp_path / "run", steps=50)
    assert err.value.exit_code == 130
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["status"] == "interrupted"
    # One probe call is spent finding the shared parameters, then 2 training steps.
    assert summary["runs"][0]["steps"] == len(read_csv(tmp_path / "run" / "steps.csv")) == 2


@pytest.mark.parametrize(
    ("over", "match"),
    [
        ({"model": "user.py:boom"}, "raised RuntimeError: cannot open weights.bin"),
        ({"model": "user.py:nothere"}, "has no attribute 'nothere'"),
        ({"model": "no_such_pkg.models:build"}, "cannot import module 'no_such_pkg.models'"),
        ({"data": "user.py:empty"}, "the data loader is empty"),
        ({"tasks": {"a": {"loss": "mse"}, "zz": {"loss": "mse"}}}, "no key 'zz'"),
        ({"losses": "user.py:vector_losses", "tasks": None}, "loss of task 'b' is not a scalar"),
    ],
)
def test_bad_user_code_is_named(tmp_path: Path, over, match):
    over = {k: v for k, v in over.items()}
    spec_over = {k: v for k, v in over.items() if v is not None}
    spec = user_spec(tmp_path, **spec_over)
    if over.get("tasks", "x") is None:
        spec = user_spec(tmp_path, losses=over["losses"])
        spec = parse_spec(
            {k: v for k, v in spec.raw.items() if k != "tasks"}, path=tmp_path / "spec.yaml"
        )
    with pytest.raises(UserCodeError, match=match):
        run_profile(spec, out=tmp_path / "run", steps=2)


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="Linux only")
def test_peak_memory_is_per_run_not_process_wide(tmp_path: Path):
    import resource

    import torch

    big = torch.ones(200 * 2**20 // 4)  # 200 MiB touched, then freed
    big.add_(1)
    del big
    process_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    result = run_profile(parse_spec(SYNTHETIC), out=tmp_path / "run", steps=3)
    run_peak = result.summary["runs"][0]["peak_memory_mb"]
    assert 0 < run_peak < process_peak - 100


def test_bf16_autocast_trains_and_records_finite_numbers(tmp_path: Path):
    spec = parse_spec({**SYNTHETIC, "precision": "bf16"})
    result = run_profile(spec, out=tmp_path / "run", steps=4)
    run = result.summary["runs"][0]
    assert run["status"] == "ok" and all(v is not None for v in run["final_loss"].values())
    # bf16 rounds the forward pass: close to the fp32 run, not equal to it
    ref = run_profile(parse_spec(SYNTHETIC), out=tmp_path / "ref", steps=4).summary["runs"][0]
    a, b = run["initial_loss"]["a"], ref["initial_loss"]["a"]
    assert a != b and abs(a - b) / b < 0.05
