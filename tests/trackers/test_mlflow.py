"""MLflow: a real sqlite tracking store, read back through MlflowClient."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from mtldiag import run_compare, run_profile

from ..conftest import SYNTHETIC, write_spec
from .conftest import PAIRS


@pytest.fixture(scope="module")
def store_uri(tmp_path_factory: pytest.TempPathFactory) -> str:
    # One store for the module: creating its tables is most of MLflow's cost here.
    return f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"


@pytest.fixture
def store(store_uri: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> MlflowClient:
    uri = store_uri
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.chdir(tmp_path)  # artifacts go to MLflow's default folder under the cwd
    return MlflowClient(tracking_uri=uri)


def test_compare_nests_one_run_per_method_and_seed(spec_path, tmp_path, store):
    out = tmp_path / "cmp"
    run_compare(spec_path, methods="ew,pcgrad", seeds=[0], steps=4, every=2, out=out, log="mlflow")
    exp = store.get_experiment_by_name("synth")
    runs = store.search_runs([exp.experiment_id])
    parent = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(parent) == 1 and parent[0].info.run_name == "synth-cmp"
    assert sorted(r.info.run_name for r in children) == ["ew seed 0", "pcgrad seed 0"]
    assert {r.data.tags["mlflow.parentRunId"] for r in children} == {parent[0].info.run_id}
    assert all(r.info.status == "FINISHED" for r in runs)

    child = next(r for r in children if r.data.params["method"] == "pcgrad")
    assert child.data.params["optimizer.lr"] == "0.01"  # the resolved spec as params
    assert child.data.params["compare.steps"] == "4"
    history = store.get_metric_history(child.info.run_id, "loss/a")
    assert [m.step for m in history] == [0, 1, 2, 3]
    cos = store.get_metric_history(child.info.run_id, f"cosine/{PAIRS[0]}")
    assert [m.step for m in cos] == [0, 2]
    assert "final_loss/a" in child.data.metrics

    names = {a.path for a in store.list_artifacts(parent[0].info.run_id)}
    assert {"report.html", "summary.json", "diagnosis.txt", "diagnosis.json"} <= names


def test_profile_is_one_run_with_the_report(tmp_path, store):
    spec = write_spec(tmp_path, {**SYNTHETIC, "name": "synth-profile"})
    run_profile(spec, out=tmp_path / "p", log="mlflow")
    (run,) = store.search_runs([store.get_experiment_by_name("synth-profile").experiment_id])
    assert run.info.run_name == "ew seed 0" and run.info.status == "FINISHED"
    assert len(store.get_metric_history(run.info.run_id, "step_time_ms")) == 6
    text = store.download_artifacts(run.info.run_id, "diagnosis.txt", str(tmp_path))
    assert "Diagnosis" in Path(text).read_text()


def test_a_new_store_is_created_without_mlflow_chatter_on_stderr(spec_path, tmp_path):
    # A fresh process and a fresh sqlite store: MLflow logs its table creation at INFO there.
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'fresh.db'}",
        "PYTHONPATH": str(Path(__file__).parents[2]),
    }
    argv = [sys.executable, "-m", "mtldiag", "profile", str(spec_path), "--steps", "2"]
    argv += ["--log", "mlflow", "-q", "--out", str(tmp_path / "run")]
    res = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "fresh.db").exists()  # the store was created by this run
    assert "database tables" not in res.stderr and " INFO " not in res.stderr, res.stderr
