"""``mtldiag compare`` through Typer's test runner: a real run, exit codes, one-line errors."""

import copy
import csv
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mtldiag.analysis.sweep import simplex_weights
from mtldiag.cli import app

from ..conftest import SYNTHETIC, write_spec

runner = CliRunner()
SAMPLE = Path(__file__).parents[2] / "sample_configs" / "synthetic.yaml"


def test_compare_sample_spec_with_single_task_and_sweep(tmp_path: Path):
    out = tmp_path / "run"
    res = runner.invoke(
        app,
        [
            "compare",
            str(SAMPLE),
            "--methods",
            "ew,pcgrad",
            "--seeds",
            "0,1",
            "--single-task",
            "--sweep",
            "3",
            "--steps",
            "10",
            "--every",
            "5",
            "--device",
            "cpu",
            "--out",
            str(out),
        ],
    )
    assert res.exit_code == 0, res.output
    for name in ("steps.csv", "pairs.csv", "summary.json", "spec.yaml"):
        assert (out / name).is_file(), name
    summary = json.loads((out / "summary.json").read_text())
    assert summary["kind"] == "compare" and summary["status"] == "complete"
    sweeps = {"sweep:" + ",".join(f"{x:.3g}" for x in w) for w in simplex_weights(3, 3, 0)}
    singles = {"single:a", "single:b", "single:c"}
    assert len(summary["runs"]) == 2 * (2 + 3 + 3)
    assert {(r["method"], r["seed"]) for r in summary["runs"]} == {
        (label, s) for label in {"ew", "pcgrad"} | sweeps | singles for s in (0, 1)
    }
    cmp = summary["comparison"]
    assert {r["label"] for r in cmp["rows"]} == {"ew", "pcgrad"} | sweeps
    assert sorted(r["rank"] for r in cmp["rows"]) == [1, 2, 3, 4, 5]
    assert all(r["seeds"] == 2 and r["failed"] == 0 for r in cmp["rows"])
    assert cmp["reference"] == "single_task" and set(cmp["single_task"]) == {"a", "b", "c"}
    assert cmp["evaluation"] == "train_loss_tail" and cmp["failed_runs"] == []
    assert all(r["delta_m"] is not None and r["conflict_rate"] is not None for r in cmp["rows"])
    with open(out / "steps.csv") as f:
        instrumented = [r for r in csv.DictReader(f) if r["instrumented"] == "1"]
    assert {r["step"] for r in instrumented} == {"0", "5"}  # every 5th of 10 steps
    assert cmp["rows"][0]["label"] in res.output  # the ranked table is printed


def test_spec_defaults_to_mtldiag_yaml_in_the_current_folder(tmp_path: Path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    res = runner.invoke(app, ["compare", "--methods", "ew"])
    assert res.exit_code == 2
    assert "mtldiag.yaml" in res.output and "cp sample_configs/synthetic.yaml" in res.output
    write_spec(tmp_path, SYNTHETIC, "mtldiag.yaml")
    res = runner.invoke(
        app, ["compare", "--methods", "ew,mgda", "--steps", "2", "--out", str(tmp_path / "run")]
    )
    assert res.exit_code == 0, res.output
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert {r["label"] for r in summary["comparison"]["rows"]} == {"ew", "mgda"}


@pytest.mark.parametrize(
    ("seeds", "message"),
    [
        ("", "--seeds is empty"),
        (" , ,", "--seeds is empty"),
        ("0,x", "is not a comma-separated list of whole numbers"),
        ("0.5", "is not a comma-separated list"),
        ("1,1", "repeats a seed"),
    ],
)
def test_bad_seeds_exit_2(synthetic_spec: Path, tmp_path: Path, seeds: str, message: str):
    res = runner.invoke(
        app,
        [
            "compare",
            str(synthetic_spec),
            "--methods",
            "ew",
            "--seeds",
            seeds,
            "--out",
            str(tmp_path / "run"),
        ],
    )
    assert res.exit_code == 2, res.output
    assert message in res.output and "Traceback" not in res.output


def test_unknown_method_exit_2_lists_methods_and_suggests(synthetic_spec: Path):
    res = runner.invoke(app, ["compare", str(synthetic_spec), "--methods", "ew,pcgard"])
    assert res.exit_code == 2
    text = " ".join(res.output.split())
    assert "Unknown method 'pcgard'. Did you mean 'pcgrad'?" in text
    assert "Valid methods: ew, fixed," in text and "upgrad" in text


def test_bad_hyper_parameter_exit_2(synthetic_spec: Path):
    res = runner.invoke(app, ["compare", str(synthetic_spec), "--methods", "cagrad:c=-1"])
    assert res.exit_code == 2 and "`c` should be a non-negative float" in res.output


def test_eval_returning_wrong_tasks_fails_every_run_exit_1(tmp_path: Path):
    # Junk from the user's eval fails each run alone (the run's training records are kept);
    # when no run is left ok, the comparison exits 1 with the first run's reason.
    ev = tmp_path / "evalfn.py"
    ev.write_text("def evaluate(model, loader):\n    return {'a': 0.0, 'b': 0.0}\n")
    spec = write_spec(tmp_path, {**SYNTHETIC, "eval": "evalfn.py:evaluate"})
    res = runner.invoke(
        app,
        ["compare", str(spec), "--methods", "ew", "--steps", "2", "--out", str(tmp_path / "run")],
    )
    assert res.exit_code == 1, res.output
    text = " ".join(res.output.split())
    assert "every run failed; the first: ew (seed 0) in evaluation after step 2" in text
    assert "must return {task: value} for a, b, c; it returned: a, b" in text
    assert "Traceback" not in res.output


def test_diverging_method_is_reported_and_others_finish(tmp_path: Path):
    spec = write_spec(tmp_path, SYNTHETIC)
    res = runner.invoke(
        app,
        [
            "compare",
            str(spec),
            "--methods",
            "fixed:weights={a: 1000000, b: 1, c: 1},ew",
            "--steps",
            "8",
            "--out",
            str(tmp_path / "run"),
        ],
    )
    assert res.exit_code == 0, res.output
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    failed = summary["comparison"]["failed_runs"]
    assert len(failed) == 1 and "task 'a'" in failed[0]["error"]
    assert [r["status"] for r in summary["runs"]] == ["failed", "ok"]


def test_every_run_failing_exits_1(tmp_path: Path):
    data = copy.deepcopy(SYNTHETIC)
    data["optimizer"] = {"name": "sgd", "lr": 1.0e6}
    spec = write_spec(tmp_path, data)
    res = runner.invoke(
        app,
        ["compare", str(spec), "--methods", "ew", "--steps", "8", "--out", str(tmp_path / "run")],
    )
    assert res.exit_code == 1, res.output
    assert "every run failed" in res.output and "at step" in res.output
    assert (tmp_path / "run" / "summary.json").is_file()
