"""``compare --jobs N`` and ``--resume``: worker processes give the very numbers one process
gives, Ctrl-C keeps finished runs and stops every worker, a stopped comparison finishes with
what it recorded, and bad input is refused before any training."""

from __future__ import annotations

import csv
import json
import multiprocessing as mp
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch
from typer.testing import CliRunner

from mtldiag.cli import app
from mtldiag.engine.device import resolve_device
from mtldiag.errors import Interrupted, MtldiagError, SpecError
from mtldiag.runs.compare import run_compare
from mtldiag.runs.executors import worker_devices
from mtldiag.runs.resume import resume_compare
from mtldiag.spec import load_spec

from ..conftest import SYNTHETIC, write_spec
from .conftest import GRID, MACHINE


def _runs(summary: dict[str, Any]) -> list[dict[str, Any]]:
    return [{k: v for k, v in r.items() if k not in MACHINE} for r in summary["runs"]]


def _rows(run_dir: Path, name: str) -> list[tuple[str, ...]]:
    with open(run_dir / name, newline="") as f:
        rows = list(csv.DictReader(f))
    return sorted(tuple(v for k, v in r.items() if k not in MACHINE) for r in rows)


def test_two_workers_give_the_numbers_of_one_process_bit_for_bit(
    spec_path: Path, serial: Path, tmp_path: Path
):
    res = run_compare(load_spec(spec_path), out=tmp_path / "run", jobs=2, **GRID)
    ref = json.loads((serial / "summary.json").read_text())
    assert _runs(res.summary) == _runs(ref)  # plan order too, whatever order they finished in
    assert [r["method"] for r in res.summary["runs"]] == ["ew", "pcgrad", "mgda"]
    for name in ("steps.csv", "pairs.csv"):
        assert _rows(tmp_path / "run", name) == _rows(serial, name)
    assert (tmp_path / "run" / "report.html").exists()
    assert not mp.active_children()
    # env.json says where the runs trained: two CPU slots, each with its share of threads
    env = json.loads((tmp_path / "run" / "env.json").read_text())
    assert env["workers"] == ["cpu", "cpu"]
    assert env["worker_threads"] == max(1, torch.get_num_threads() // 2)
    assert "workers" not in json.loads((serial / "env.json").read_text())


class _StopAfterFirstRun:
    """Ctrl-C as the parent sees it: a KeyboardInterrupt when a run starts after one finished."""

    finished = False

    def run_started(self, label: str, seed: int, steps: int) -> None:
        if self.finished:
            raise KeyboardInterrupt

    def step_done(self, step: int, losses: dict[str, float]) -> None:
        pass

    def run_finished(self, result: dict[str, Any]) -> None:
        self.finished = True


@pytest.mark.parametrize("jobs", [1, 2])
def test_ctrl_c_keeps_finished_runs_stops_workers_and_resume_finishes_them(
    spec_path: Path, serial: Path, tmp_path: Path, jobs: int
):
    out = tmp_path / "run"
    with pytest.raises(Interrupted, match="--resume"):
        run_compare(load_spec(spec_path), out=out, jobs=jobs, observer=_StopAfterFirstRun(), **GRID)
    assert not mp.active_children()  # no worker outlives the parent's Ctrl-C
    stopped = json.loads((out / "summary.json").read_text())
    assert stopped["status"] == "interrupted"
    assert 1 <= sum(r["status"] == "ok" for r in stopped["runs"]) < 3

    res = resume_compare(out, jobs=jobs)  # no spec: the recorded one
    assert res.summary["status"] == "complete"
    ref = json.loads((serial / "summary.json").read_text())
    assert _runs(res.summary) == _runs(ref)
    assert res.summary["comparison"]["rows"] and res.summary["compare"] == {
        **ref["compare"],
        "spec_path": ref["compare"]["spec_path"],
    }
    for name in ("steps.csv", "pairs.csv"):  # no row twice, none of a dropped partial run
        assert _rows(out, name) == _rows(serial, name)


def test_resume_refuses_options_or_a_spec_that_differ_from_the_record(serial: Path, tmp_path: Path):
    with pytest.raises(MtldiagError, match=r"steps, seeds differ"):
        resume_compare(serial, steps=7, seeds=[0, 2], every=2)  # every is as recorded
    other = write_spec(tmp_path, {**SYNTHETIC, "optimizer": {"name": "sgd", "lr": 0.5}})
    with pytest.raises(MtldiagError, match=r"optimizer\.lr differ"):
        resume_compare(serial, other)


def test_resume_on_a_folder_that_is_not_a_compare_run(tmp_path: Path, profile_run: Path):
    for folder in (tmp_path, profile_run, tmp_path / "missing"):
        with pytest.raises(MtldiagError, match="not a (compare run|directory)"):
            resume_compare(folder)


def test_resume_refuses_a_summary_without_the_comparisons_record(serial: Path, tmp_path: Path):
    # As an older `mtldiag report` rebuilt it: was an internal error (KeyError 'compare').
    folder = tmp_path / "run"
    shutil.copytree(serial, folder)
    summary = json.loads((folder / "summary.json").read_text())
    del summary["compare"]
    (folder / "summary.json").write_text(json.dumps(summary))
    with pytest.raises(MtldiagError, match="no record of what the comparison asked") as err:
        resume_compare(folder)
    assert "--rebuild" in (err.value.hint or "")


def test_worker_devices_round_robin_and_refusals():
    assert worker_devices("cpu", 2) == ["cpu", "cpu"]
    with pytest.raises(MtldiagError, match="at least 1"):
        worker_devices("cpu", 0)
    with pytest.raises(MtldiagError, match="pinned to 'cuda:0'"):
        worker_devices("cuda:0", 2)
    with pytest.raises(MtldiagError, match="CPU cores"):
        worker_devices("cpu", 10_000)
    # --jobs N takes the device --jobs 1 would: auto is this machine's first device
    first = resolve_device("auto").type
    if first in ("cpu", "cuda"):
        assert {d.split(":")[0] for d in worker_devices("auto", 2)} == {first}


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_jobs_on_cuda_without_a_gpu_is_one_line_exit_2(spec_path: Path, tmp_path: Path):
    with pytest.raises(SpecError, match="CUDA is not available"):
        worker_devices("cuda", 2)  # was: ZeroDivisionError (0 GPUs, round robin)
    argv = ["compare", str(spec_path), "-m", "ew", "--device", "cuda", "--jobs", "2"]
    res = CliRunner().invoke(app, [*argv, "--out", str(tmp_path / "x")])
    assert res.exit_code == 2 and "CUDA is not available" in res.output
    assert "internal error" not in res.output and not (tmp_path / "x").exists()
