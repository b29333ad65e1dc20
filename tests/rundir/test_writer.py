"""`RunWriter`: the files of a run directory, read back through `rundir.load`."""

from __future__ import annotations

import json
import math

import pytest

from mtldiag.engine.gramian import ALL_LAYERS, StepMetrics
from mtldiag.errors import MtldiagError
from mtldiag.rundir.load import read_pairs, read_steps
from mtldiag.rundir.schema import new_summary
from mtldiag.rundir.writer import RunWriter, default_run_dir, safe_name

TASKS = ["a", "b", "c"]
ENV = {"mtldiag": "0", "device": "cpu"}


def step_metrics() -> StepMetrics:
    pairs = [(0, 1), (0, 2), (1, 2)]
    return StepMetrics(
        layers=[ALL_LAYERS, "trunk.0"],
        pairs=pairs,
        grad_norm=[1.5, 0.1, 1 / 3],
        layer_norms=[],
        dot=[[-1.0, 0.5, 0.25], [2.0, -0.125, 0.0]],
        cosine=[[-0.2, 0.1, 1 / 7], [0.3, -0.05, 0.0]],
        gms=[[0.4, 0.9, 1.0], [0.6, 0.7, 1.0]],
    )


@pytest.fixture
def writer(tmp_path):
    w = RunWriter(tmp_path / "run", TASKS)
    assert not w.path.exists()  # nothing on disk before open()
    w.open("name: x\n", ENV)
    yield w
    w.close()


def test_open_writes_spec_env_and_the_csv_headers(writer):
    assert (writer.path / "spec.yaml").read_text() == "name: x\n"
    assert json.loads((writer.path / "env.json").read_text()) == ENV
    header = (writer.path / "steps.csv").read_text().splitlines()[0].split(",")
    assert header[:6] == ["method", "seed", "step", "instrumented", "time_ms", "peak_memory_mb"]
    per_task = [f"{k}/{t}" for k in ("loss", "grad_norm", "weight") for t in TASKS]
    assert header[6:] == [*per_task, "lr"]


def test_a_written_step_reads_back_equal(writer):
    writer.write_step(
        "pcgrad", 2, 7, 3.25, 12.5, [0.1, 2 / 3, 5.0], [1.0, 0.5, 2.0], step_metrics()
    )
    steps = read_steps(writer.path / "steps.csv")
    row = steps.iloc[0]
    assert (row["method"], row["seed"], row["step"], row["instrumented"]) == ("pcgrad", 2, 7, 1)
    assert (row["time_ms"], row["peak_memory_mb"]) == (3.25, 12.5)
    assert [row[f"loss/{t}"] for t in TASKS] == [0.1, 2 / 3, 5.0]  # repr: exact round trip
    assert [row[f"grad_norm/{t}"] for t in TASKS] == [1.5, 0.1, 1 / 3]
    assert [row[f"weight/{t}"] for t in TASKS] == [1.0, 0.5, 2.0]
    pairs = read_pairs(writer.path / "pairs.csv")
    assert len(pairs) == 6  # 3 pairs x (whole trunk + trunk.0)
    first = pairs.iloc[0]
    assert (first["a"], first["b"], first["layer"]) == ("a", "b", ALL_LAYERS)
    assert (first["dot"], first["cosine"], first["gms"]) == (-1.0, -0.2, 0.4)
    bc = pairs[(pairs["a"] == "b") & (pairs["layer"] == ALL_LAYERS)].iloc[0]
    assert bc["cosine"] == 1 / 7
    layer = pairs[pairs["layer"] == "trunk.0"]
    assert list(layer["cosine"]) == [0.3, -0.05, 0.0]


def test_a_single_task_run_leaves_the_other_tasks_empty(writer):
    writer.write_step("single:b", 0, 0, 1.0, 1.0, [4.0], None, None, tasks=["b"])
    row = read_steps(writer.path / "steps.csv").iloc[0]
    assert row["loss/b"] == 4.0 and math.isnan(row["loss/a"]) and math.isnan(row["loss/c"])
    assert row["instrumented"] == 0 and math.isnan(row["weight/b"])
    assert (
        read_pairs(writer.path / "pairs.csv") is None or read_pairs(writer.path / "pairs.csv").empty
    )


def test_summary_is_written_whole_and_refuses_nan(writer):
    summary = new_summary("profile", "x", TASKS, ["trunk.0"], "cpu")
    out = writer.write_summary(summary)
    assert json.loads(out.read_text()) == summary
    assert not list(writer.path.glob("*.tmp"))
    with pytest.raises(ValueError):
        writer.write_summary({**summary, "device": float("nan")})
    assert json.loads(out.read_text()) == summary  # the good summary is still there


@pytest.mark.parametrize(
    ("name", "safe"), [("..", "run"), (".", "run"), (".hidden", "hidden"), ("a/../b", "a_.._b")]
)
def test_a_run_name_is_one_path_component_never_dot_or_dotdot(name, safe):
    assert safe_name(name) == safe
    assert default_run_dir(name, "runs").parent.name == safe


def test_default_names_are_taken_atomically_one_folder_per_writer(tmp_path):
    base = tmp_path / "runs" / "x" / "20260101-000000"
    first, second = RunWriter(base, ["a"], fresh=True), RunWriter(base, ["a"], fresh=True)
    first.open("", {})  # type: ignore[arg-type]
    second.open("", {})  # type: ignore[arg-type]
    assert (first.path, second.path) == (base, base.with_name(base.name + "-2"))
    first.close()
    second.close()


def test_an_out_folder_that_holds_a_run_or_is_being_written_is_refused(tmp_path):
    writer = RunWriter(tmp_path / "run", ["a"])
    writer.open("", {})  # type: ignore[arg-type]
    with pytest.raises(MtldiagError, match="being written by another mtldiag process"):
        RunWriter(tmp_path / "run", ["a"]).open("", {})  # type: ignore[arg-type]
    writer.close()
    with pytest.raises(MtldiagError, match="already holds a run"):
        RunWriter(tmp_path / "run", ["a"]).open("", {})  # type: ignore[arg-type]
    assert read_steps(tmp_path / "run" / "steps.csv") is not None  # the first run is intact


def test_a_claimed_folder_given_back_before_any_write_is_removed(tmp_path):
    writer = RunWriter(tmp_path / "runs" / "x" / "stamp", ["a"], fresh=True)
    path = writer.claim()  # what the trackers are told before they open
    assert path.is_dir() and not any(path.iterdir())
    writer.abandon()  # a tracker could not start: no empty folder is left behind
    assert not path.exists()
    kept = tmp_path / "mine"
    kept.mkdir()
    mine = RunWriter(kept, ["a"])
    mine.claim()
    mine.abandon()  # not made by the writer (an existing --out): the user's folder stays
    assert kept.is_dir()
