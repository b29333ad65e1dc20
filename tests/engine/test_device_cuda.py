"""The CUDA paths, on a machine with a GPU: auto device, CUDA-event timing, the allocator's
peak, fp16 with its GradScaler, bf16, representation mode, GradNorm's closed form and
``compare --jobs`` round robin, each checked against the CPU run of the same spec.

Skipped where no GPU is visible (CI has none): ``benchmarks/device_check.sh`` runs this file
on a lent GPU machine in one short command.
"""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch

from mtldiag import methods
from mtldiag.engine.balancer import Balancer
from mtldiag.engine.device import StepTimer, resolve_device
from mtldiag.runs.compare import run_compare
from mtldiag.runs.executors.devices import worker_devices
from mtldiag.runs.profile import run_profile
from mtldiag.spec import parse_spec

from ..conftest import SYNTHETIC

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")


def _spec(**changes):
    return parse_spec({**SYNTHETIC, "device": "cuda", **changes})


def _column(run_dir: Path, name: str, column: str) -> list[float]:
    with open(run_dir / name, newline="") as f:
        return [float(r[column]) for r in csv.DictReader(f) if r[column] != ""]


def test_auto_picks_cuda_and_steps_are_timed_with_events():
    assert resolve_device("auto").type == "cuda"
    timer = StepTimer(torch.device("cuda"))
    assert timer.cuda
    a = torch.randn(2048, 2048, device="cuda")
    timer.start()
    for _ in range(10):
        a = a @ a / 2048
    ms = timer.stop()  # events and a synchronize: the GPU work, not the launch
    assert ms > 0.0


def test_a_cuda_profile_records_the_cpu_run_and_the_allocator_peak(tmp_path: Path):
    gpu = run_profile(_spec(), out=tmp_path / "gpu", steps=6, every=1).summary
    cpu = run_profile(parse_spec(SYNTHETIC), out=tmp_path / "cpu", steps=6, every=1).summary
    assert gpu["device"].startswith("cuda") and cpu["device"] == "cpu"
    columns = (("steps.csv", "loss/a"), ("steps.csv", "grad_norm/b"), ("pairs.csv", "cosine"))
    for name, col in columns:
        assert _column(tmp_path / "gpu", name, col) == pytest.approx(
            _column(tmp_path / "cpu", name, col), rel=1e-3, abs=1e-4
        ), (name, col)
    run = gpu["runs"][0]
    # torch.cuda.max_memory_allocated: a tiny model's tensors, not the process's RSS
    assert 0 < run["peak_memory_mb"] < 100
    assert run["step_time_ms_median"] > 0


def test_fp16_takes_exact_unscaled_task_gradients_and_counts_skipped_steps(tmp_path: Path):
    fp32 = run_profile(_spec(), out=tmp_path / "fp32", steps=8, every=1).summary["runs"][0]
    fp16 = run_profile(_spec(precision="fp16"), out=tmp_path / "fp16", steps=8, every=1)
    run = fp16.summary["runs"][0]
    assert run["status"] == "ok" and isinstance(run["skipped_steps"], int)
    assert fp32["status"] == "ok"
    # The GradScaler's scale (65536 at the start) is divided out of every recorded norm: on
    # step 0 (same weights, same batch) only fp16's rounding of the forward differs.
    for t in "abc":
        first16 = _column(tmp_path / "fp16", "steps.csv", f"grad_norm/{t}")[0]
        first32 = _column(tmp_path / "fp32", "steps.csv", f"grad_norm/{t}")[0]
        assert first16 == pytest.approx(first32, rel=0.02), t


def test_bf16_and_representation_mode_train_on_cuda(tmp_path: Path):
    bf16 = run_profile(_spec(precision="bf16"), out=tmp_path / "bf16", steps=4, method="pcgrad")
    assert bf16.summary["runs"][0]["status"] == "ok"
    rep = run_profile(_spec(), out=tmp_path / "rep", steps=4, method="mgda@representation")
    assert rep.summary["jacobian"] == "representation"
    assert rep.summary["runs"][0]["status"] == "ok"


def test_gradnorm_closed_form_equals_the_partial_passes_on_cuda():
    torch.manual_seed(0)
    trunk = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.ReLU(), torch.nn.Linear(32, 32))
    heads = torch.nn.ModuleList(torch.nn.Linear(32, 1) for _ in range(3))
    model = torch.nn.ModuleDict({"trunk": trunk, "heads": heads}).cuda()
    x = torch.randn(64, 16, device="cuda")
    ys = torch.randn(3, 64, 1, device="cuda")
    grads = []
    for with_model in (True, False):
        bal = Balancer(
            methods.create("gradnorm"),
            trunk.named_parameters(),
            list(heads.parameters()),
            model=model if with_model else None,
        )
        model.zero_grad(set_to_none=True)
        for _ in range(2):  # the hook sees forwards from the second on
            model.zero_grad(set_to_none=True)
            z = trunk(x)
            losses = {f"t{i}": ((h(z) - ys[i]) ** 2).mean() for i, h in enumerate(heads)}
            bal.backward(losses)
        if with_model:
            assert bal.capture is not None
        grads.append([p.grad.clone() for p in model.parameters()])
        bal.close()
    for a, b in zip(*grads, strict=True):
        assert torch.allclose(a, b, rtol=1e-5, atol=1e-7)


def test_compare_jobs_puts_workers_on_the_gpus_round_robin(tmp_path: Path):
    k = torch.cuda.device_count()
    assert worker_devices("cuda", 2) == [f"cuda:{i % k}" for i in range(2)]
    grid = {"methods": "ew,pcgrad", "seeds": [0], "steps": 4, "every": 2}
    one = run_compare(_spec(), out=tmp_path / "j1", **grid).summary
    two = run_compare(_spec(), out=tmp_path / "j2", jobs=2, **grid).summary
    assert [r["status"] for r in two["runs"]] == ["ok", "ok"]
    for a, b in zip(one["runs"], two["runs"], strict=True):
        assert a["final_loss"] == pytest.approx(b["final_loss"], rel=1e-5)
