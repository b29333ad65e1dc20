"""W&B offline (no API key): the run's own file read back."""

from __future__ import annotations

from pathlib import Path

import pytest

from mtldiag import run_compare, run_profile

from .conftest import PAIRS, TASKS
from .wandb_records import history_and_summary


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_MODE", raising=False)  # mtldiag must choose offline itself


def _runs(run_dir: Path) -> dict[str, Path]:
    return {p.name: next(p.glob("run-*.wandb")) for p in (run_dir / "wandb").glob("offline-run-*")}


def test_profile_offline_run_has_every_step_and_a_summary(spec_path: Path, tmp_path: Path):
    out = tmp_path / "run"
    run_profile(spec_path, out=out, log="wandb")
    (path,) = _runs(out).values()
    rows, summary = history_and_summary(path)
    assert [r["_step"] for r in rows] == list(range(6))
    assert {f"loss/{t}" for t in TASKS} <= set(rows[0])
    assert f"cosine/{PAIRS[0]}" in rows[0] and f"cosine/{PAIRS[0]}" not in rows[1]  # every: 2
    assert summary["status"] == "ok"
    assert summary["final_loss/a"] > 0 and "Diagnosis" in summary["diagnosis"]


def test_compare_one_offline_run_per_method_and_seed_plus_the_comparison(spec_path, tmp_path):
    out = tmp_path / "cmp"
    run_compare(spec_path, methods="ew,mgda", seeds=[0], steps=3, every=1, out=out, log="wandb")
    runs = _runs(out)
    assert len(runs) == 3  # ew, mgda, and the comparison summary run
    summaries = [history_and_summary(p)[1] for p in runs.values()]
    assert sorted(s.get("status", "summary") for s in summaries) == ["ok", "ok", "summary"]
    assert any("verdict" in s for s in summaries)
