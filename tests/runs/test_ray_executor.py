"""``--executor ray`` on a real local Ray (2 CPUs): each run a Ray task, one run directory
written by the driver, the numbers of one process, every step in the trackers; an unreachable
cluster refused fast."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from mtldiag.errors import MtldiagError
from mtldiag.runs.compare import run_compare
from mtldiag.spec import load_spec

from .conftest import GRID
from .test_parallel_compare import _rows, _runs

ray = pytest.importorskip("ray")
EventAccumulator = pytest.importorskip(
    "tensorboard.backend.event_processing.event_accumulator"
).EventAccumulator


def test_ray_tasks_write_one_run_directory_with_the_numbers_of_one_process(
    spec_path: Path, serial: Path, tmp_path: Path
):
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        res = run_compare(
            load_spec(spec_path),
            out=tmp_path / "run",
            executor="ray",
            log="tensorboard",
            **GRID,
        )
        assert ray.is_initialized()  # a cluster the caller started is left running
    finally:
        ray.shutdown()
    assert res.summary["status"] == "complete"
    ref = json.loads((serial / "summary.json").read_text())
    assert _runs(res.summary) == _runs(ref)
    for name in ("steps.csv", "pairs.csv"):
        assert _rows(tmp_path / "run", name) == _rows(serial, name)
    # The trackers got every step of every run, replayed from its rows when it came back.
    for method in GRID["methods"].split(","):
        acc = EventAccumulator(str(tmp_path / "run" / "tensorboard" / f"{method}-seed0"))
        acc.Reload()
        for task in "abc":
            assert [e.step for e in acc.Scalars(f"loss/{task}")] == list(range(GRID["steps"]))


def test_an_unreachable_ray_address_is_refused_in_seconds(spec_path: Path, tmp_path: Path):
    t0 = time.perf_counter()
    with pytest.raises(MtldiagError, match="cannot reach the Ray cluster at '127.0.0.1:9'"):
        run_compare(
            load_spec(spec_path),
            out=tmp_path / "run",
            executor="ray",
            ray_address="127.0.0.1:9",
            **GRID,
        )
    assert time.perf_counter() - t0 < 10
    assert not (tmp_path / "run").exists()  # refused before anything was written
