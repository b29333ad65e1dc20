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
