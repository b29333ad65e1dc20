"""Two CPU processes over Gloo: global-batch statistics, ranks in lockstep, one run directory.

Processes are started with ``torch.multiprocessing`` (and, for the CLI, ``torchrun``) under a
hard timeout, so a hang fails the test instead of hanging CI.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from mtldiag.engine import distributed
from mtldiag.engine.jacobian import JacobianEngine
from mtldiag.engine.probe import GradientProbe
from mtldiag.runs.build import build_model
from mtldiag.runs.train import compute_losses, prepare
from mtldiag.spec import load_spec

from ..conftest import SYNTHETIC, write_spec

ROOT = Path(__file__).parents[2]
TIMEOUT_S = 120
WORLD = 2
# Noisy targets: each rank's batch gives a different gradient, so averaging J is observable.
NOISY_DATA = {**SYNTHETIC["data"], "kwargs": {**SYNTHETIC["data"]["kwargs"], "noise": 1.0}}
NOISY = {**SYNTHETIC, "data": NOISY_DATA}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _flat_params(model: torch.nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().reshape(-1) for p in model.parameters()])


def _worker(rank: int, port: int, spec_path: str, out: str) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        RANK=str(rank),
        WORLD_SIZE=str(WORLD),
        LOCAL_RANK=str(rank),
    )
    torch.set_num_threads(1)
    from mtldiag import methods
    from mtldiag.runs.build import BatchCycle
    from mtldiag.runs.train import train_run

    dev = distributed.setup_device("cpu")
    spec = load_spec(spec_path)
    record: dict[str, object] = {}

    # (a) first step: the local Jacobian, then the probe's (averaged across ranks).
    prep = prepare(spec, 0, dev)
    batch = next(BatchCycle(prep.loader, 0))
    losses = compute_losses(prep.loss_fn, prep.model, batch, prep.tasks, dev, "fp32")
    local = (
        JacobianEngine(prep.selection.layout)
        .compute(list(losses.values()), accumulate_heads=False, retain_graph=True)
        .clone()
    )
    probe = GradientProbe(prep.model, shared=prep.selection, every=1)
    step = probe.backward(losses)
    assert probe.engine is not None and step.metrics is not None
    record.update(
        batch=batch,
        local_jac=local,
        jac=probe.engine._buffer.clone(),
        cosine=step.metrics.cosine[0],
        norms=step.metrics.grad_norm,
        losses=step.losses,
    )

    # (b) a few steps of a gradient method and of weighting methods, plain and instrumented.
    for name in ("pcgrad", "uncertainty", "gradnorm"):
        prep = prepare(spec, 0, dev)
        before = _flat_params(prep.model)
        train_run(prep, methods.create(name), name, steps=5, every=2)
        after = _flat_params(prep.model)
        record[name] = after
        record[name + "/moved"] = float((after - before).abs().max())

    # (c) the same with 2 micro-batches per step: DDP's no_sync on the first, one average.
    accumulating = load_spec(spec_path, overrides={"accumulate": 2})
    for name in ("pcgrad", "uncertainty", "gradnorm"):
        prep = prepare(accumulating, 0, dev)
        before = _flat_params(prep.model)
        train_run(prep, methods.create(name), name, steps=3, every=2)
        after = _flat_params(prep.model)
        record["k2/" + name] = after
        record["k2/" + name + "/moved"] = float((after - before).abs().max())
    torch.save(record, Path(out) / f"rank{rank}.pt")
    distributed.shutdown()


def _spawn(fn, args: tuple, timeout: float = TIMEOUT_S) -> None:
    ctx = mp.start_processes(fn, args=args, nprocs=WORLD, join=False, start_method="spawn")
    deadline = time.monotonic() + timeout
    try:
        while not ctx.join(timeout=1.0):
            if time.monotonic() > deadline:
                pytest.fail(f"the {WORLD}-process run did not finish in {timeout} s (a hang)")
    finally:
        for p in ctx.processes:
            if p.is_alive():
                p.kill()


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, dict, Path]:
    folder = tmp_path_factory.mktemp("dist")
    spec_path = write_spec(folder, NOISY)
    _spawn(_worker, (_free_port(), str(spec_path), str(folder)))
    r0, r1 = (torch.load(folder / f"rank{k}.pt", weights_only=False) for k in range(WORLD))
    return r0, r1, spec_path


def test_ranks_read_different_shards_with_different_local_gradients(two_ranks):
    r0, r1, _ = two_ranks
    assert not torch.equal(r0["batch"][0], r1["batch"][0])
    # Otherwise averaging J could not be told from not averaging it.
    assert (r0["local_jac"] - r1["local_jac"]).abs().max() > 1e-2


def test_first_step_statistics_are_those_of_the_concatenated_batch(two_ranks):
    r0, r1, spec_path = two_ranks
    spec = load_spec(spec_path)
    x = torch.cat([r0["batch"][0], r1["batch"][0]])
    y = {t: torch.cat([r0["batch"][1][t], r1["batch"][1][t]]) for t in r0["batch"][1]}
    prep = prepare(spec, 0, torch.device("cpu"))  # one process: no process group here
    model = build_model(spec, 0, torch.device("cpu"))
    losses = compute_losses(prep.loss_fn, model, (x, y), prep.tasks, torch.device("cpu"), "fp32")
    probe = GradientProbe(model, every=1)
    step = probe.backward(losses)
    assert probe.engine is not None and step.metrics is not None
    # One process takes the J-free path: build the reference J from the same losses again.
    again = compute_losses(prep.loss_fn, model, (x, y), prep.tasks, torch.device("cpu"), "fp32")
    ref_jac = probe.engine.compute(list(again.values()), accumulate_heads=False)
    for r in (r0, r1):  # every rank holds the global Jacobian
        assert torch.allclose(r["jac"], ref_jac, atol=1e-5, rtol=0)
        assert r["cosine"] == pytest.approx(step.metrics.cosine[0], abs=1e-5)
        assert r["norms"] == pytest.approx(step.metrics.grad_norm, abs=1e-5)
        assert r["losses"] == pytest.approx(step.losses, abs=1e-5)

    # The global cosine is not the mean of the per-rank cosines.
    def cosines(j: torch.Tensor) -> torch.Tensor:
        u = torch.nn.functional.normalize(j.double(), dim=1)
        return (u @ u.T)[0, 1]

    mean_of_local = (cosines(r0["local_jac"]) + cosines(r1["local_jac"])) / 2
    assert abs(float(mean_of_local) - step.metrics.cosine[0][0]) > 1e-4


@pytest.mark.parametrize("method", ["pcgrad", "uncertainty", "gradnorm"])
@pytest.mark.parametrize("key", ["", "k2/"])
def test_parameters_stay_identical_across_ranks(two_ranks, method, key):
    """Also with accumulate: 2 (the second key): ranks agree after each accumulated step."""
    r0, r1, _ = two_ranks
    assert r0[key + method + "/moved"] > 1e-4  # the steps did train
    assert torch.equal(r0[key + method], r1[key + method])


def test_torchrun_profile_writes_exactly_one_run_directory(tmp_path: Path):
    out = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node",
        str(WORLD),
        "-m",
        "mtldiag",
        "profile",
        str(ROOT / "sample_configs" / "synthetic.yaml"),
        "--steps",
        "10",
        "--out",
        str(out),
        "--device",
        "cpu",
    ]
    res = subprocess.run(
        cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=TIMEOUT_S
    )
    assert res.returncode == 0, res.stderr[-3000:]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # no runs/ from rank 1
    rows = (out / "steps.csv").read_text().strip().splitlines()
    assert len(rows) == 1 + 10  # header and one row per step: rank 0 alone writes
    assert res.stdout.count("run directory:") == 1


def test_rank_1_error_is_printed_once_by_rank_0_and_stops_every_rank(tmp_path: Path):
    (tmp_path / "flaky.py").write_text(
        "import os\n"
        "from mtldiag.examples.synthetic import build_loader as base\n\n"
        "def build_loader(**kw):\n"
        "    if os.environ['RANK'] == '1':\n"
        "        raise RuntimeError('shard 1 is corrupt')\n"
        "    return base(**kw)\n"
    )
    data = {**SYNTHETIC["data"], "factory": "flaky:build_loader"}
    spec = write_spec(tmp_path, {**SYNTHETIC, "data": data})
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node",
        str(WORLD),
        "-m",
        "mtldiag",
        "profile",
        str(spec),
        "--steps",
        "10",
        "--out",
        str(tmp_path / "run"),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    t0 = time.monotonic()
    res = subprocess.run(
        cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=TIMEOUT_S
    )
    assert res.returncode != 0
    # Rank 0 was blocked in a collective: the watchdog ends it after the grace period, not the
    # 30-minute process-group timeout.
    assert time.monotonic() - t0 < distributed.GRACE_S + 30
    lines = [ln for ln in res.stderr.splitlines() if ln.startswith("error:")]
    assert lines == [
        "error: rank 1: data 'flaky:build_loader' raised RuntimeError: shard 1 is corrupt "
        "(at flaky.py:6 in build_loader)"  # the user's frame, named
    ]


# Rank 1's loader of the seed-1 run breaks mid-run (build_loader seeds torch first): rank 0
# is then blocked in that step's all-reduce, and the comparison cannot go on to another run.
MID_RUN_FLAKY = """
import os

import torch

from mtldiag.examples.synthetic import build_loader as base


class Flaky:
    def __init__(self, inner):
        self.inner, self.given = inner, 0

    def __iter__(self):
        for batch in self.inner:
            self.given += 1
            if self.given == 20:
                raise OSError("shard 7 is unreadable")
            yield batch


def build_loader(rank=0, world_size=1, **kw):
    loader = base(**kw)
    return Flaky(loader) if rank == 1 and torch.initial_seed() == 1 else loader
"""


def test_a_loader_failing_mid_run_on_one_rank_stops_every_rank_and_keeps_the_records(
    tmp_path: Path,
):
    (tmp_path / "flaky.py").write_text(MID_RUN_FLAKY)
    data = {**SYNTHETIC["data"], "factory": "flaky:build_loader"}
    spec = write_spec(tmp_path, {**SYNTHETIC, "data": data, "device": "cpu"})
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    cmd += ["--nproc-per-node", str(WORLD), "-m", "mtldiag", "compare", str(spec)]
    cmd += ["-m", "ew", "--seeds", "0,1", "--steps", "40", "--every", "10", "--out", str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(tmp_path)}
    t0 = time.monotonic()
    res = subprocess.run(
        cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=TIMEOUT_S
    )
    assert res.returncode == 1
    # Before the fix rank 1 took the failure for its own run's and waited for rank 0 forever.
    assert time.monotonic() - t0 < distributed.GRACE_S + 30
    lines = [ln for ln in res.stderr.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1, res.stderr[-2000:]
    assert lines[0].startswith("error: rank 1: ew (seed 1) at step ")
    assert "shard 7 is unreadable (at flaky.py:" in lines[0]
    # The finished run is kept for --resume; the cut run's rows are whole.
    summary = json.loads((out / "summary.json").read_text())
    assert [(r["seed"], r["status"]) for r in summary["runs"]] == [(0, "ok")]
    seeds = [row.split(",")[1] for row in (out / "steps.csv").read_text().splitlines()[1:]]
    assert seeds.count("0") == 40 and 0 < seeds.count("1") < 40


def test_one_process_runs_no_collective(tmp_path: Path, monkeypatch):
    from mtldiag import methods
    from mtldiag.runs.train import train_run

    def refuse(*args, **kwargs):
        raise AssertionError("a collective ran in a single-process run")

    for name in ("all_reduce", "broadcast_object_list", "init_process_group"):
        monkeypatch.setattr(torch.distributed, name, refuse)
    monkeypatch.setenv("WORLD_SIZE", "1")
    spec = load_spec(write_spec(tmp_path, SYNTHETIC))
    dev = distributed.setup_device("cpu")
    assert distributed.context() is None
    for name in ("pcgrad", "uncertainty", "gradnorm"):
        run = train_run(prepare(spec, 0, dev), methods.create(name), name, steps=4, every=2)
        assert run["steps"] == 4
