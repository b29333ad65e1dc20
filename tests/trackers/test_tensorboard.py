"""TensorBoard: events read back with tensorboard's own EventAccumulator."""

from __future__ import annotations

from pathlib import Path

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from mtldiag import run_compare, run_profile

from .conftest import PAIRS, TASKS


def _scalars(folder: Path) -> EventAccumulator:
    acc = EventAccumulator(str(folder))
    acc.Reload()
    return acc


def test_profile_writes_every_step_under_the_key_scheme(spec_path: Path, tmp_path: Path):
    out = tmp_path / "run"
    run_profile(spec_path, out=out, log="tensorboard")
    acc = _scalars(out / "tensorboard" / "ew-seed0")
    tags = set(acc.Tags()["scalars"])
    assert {f"loss/{t}" for t in TASKS} | {f"conflict_rate/{p}" for p in PAIRS} <= tags
    assert {"step_time_ms", "lr"} <= tags
    assert [e.step for e in acc.Scalars("loss/a")] == list(range(6))
    assert [e.step for e in acc.Scalars("cosine/a-vs-b")] == [0, 2, 4]  # every: 2
    assert acc.Scalars("lr")[0].value == pytest.approx(0.01)  # stored as float32
    summary = _scalars(out / "tensorboard" / "summary")
    assert "diagnosis/text_summary" in summary.Tags()["tensors"]


def test_compare_has_one_tensorboard_run_per_method_and_seed(spec_path: Path, tmp_path: Path):
    out = tmp_path / "cmp"
    run_compare(
        spec_path, methods="ew,pcgrad", seeds=[0, 1], steps=3, every=1, out=out, log=["tensorboard"]
    )
    runs = sorted(p.name for p in (out / "tensorboard").iterdir())
    assert runs == ["ew-seed0", "ew-seed1", "pcgrad-seed0", "pcgrad-seed1", "summary"]
    assert len(_scalars(out / "tensorboard" / "pcgrad-seed1").Scalars("gms/b-vs-c")) == 3


EXPLODE = "fixed:weights={a: 1000000, b: 1, c: 1}"  # SGD with a 1e6 weight: inf in 2-3 steps


def _series(folder: Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar tag of one TensorBoard run as its (step, value) series, but the wall clock."""
    acc = _scalars(folder)
    tags = set(acc.Tags()["scalars"]) - {"step_time_ms"}
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in tags}


def test_worker_processes_log_the_steps_one_process_logs(spec_path: Path, tmp_path: Path):
    grid = {"methods": f"pcgrad,{EXPLODE}", "seeds": [0], "steps": 4, "every": 2}
    runs = {}
    for jobs in (1, 2):
        res = run_compare(
            spec_path, out=tmp_path / f"j{jobs}", jobs=jobs, log="tensorboard", **grid
        )
        root = tmp_path / f"j{jobs}" / "tensorboard"
        runs[jobs] = {p.name: _series(p) for p in root.iterdir() if p.name != "summary"}
    assert len(runs[1]) == 2 and runs[2] == runs[1]
    pcgrad = runs[1]["pcgrad-seed0"]
    assert [s for s, _ in pcgrad["loss/a"]] == [0, 1, 2, 3]
    assert [s for s, _ in pcgrad["conflict_rate/a-vs-b"]] == [0, 2]
    # The diverging run logs its last step (the one steps.csv records with the bad loss) too,
    # with the numbers that are finite.
    bad = next(r for r in res.summary["runs"] if r["status"] == "failed")
    (exploded,) = (s for name, s in runs[1].items() if name.startswith("fixed"))
    assert [s for s, _ in exploded["loss/b"]] == list(range(bad["steps"]))
    assert len(exploded["loss/a"]) == bad["steps"] - 1
