"""Rebuilding summary.json from the CSVs replays them through the training-time aggregation."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest

from mtldiag.rundir.load import load_run, read_steps
from mtldiag.rundir.rebuild import rebuild_summary


def close(a, b, path=""):
    """Recursive equality with float tolerance (the CSVs round time to 0.1 µs, memory to 0.1 MB)."""
    if isinstance(a, dict):
        assert set(a) == set(b), path
        for k in a:
            close(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, list):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            close(x, y, f"{path}[{i}]")
    elif isinstance(a, float) and isinstance(b, float):
        assert math.isclose(a, b, rel_tol=1e-6, abs_tol=0.06), (path, a, b)
    else:
        assert a == b, (path, a, b)


def test_rebuilt_run_matches_the_one_training_wrote(profile_run: Path):
    original = json.loads((profile_run / "summary.json").read_text())
    rebuilt = rebuild_summary(load_run(profile_run))
    assert rebuilt["status"] == "interrupted" and rebuilt["kind"] == "profile"
    assert rebuilt["tasks"] == original["tasks"] and rebuilt["layers"] == original["layers"]
    assert rebuilt["name"] == original["name"]
    run, orig = rebuilt["runs"][0], original["runs"][0]
    # The 20 steps asked from Python are in the run's spec.yaml: all done, so the run is ok.
    assert load_run(profile_run).spec["profile"]["steps"] == 20  # the sample spec says 200
    assert run["status"] == orig["status"] == "ok" and run["error"] is None
    close(orig, run)
    assert [f["code"] for f in rebuilt["diagnosis"]] == [f["code"] for f in original["diagnosis"]]


def test_a_nan_row_marks_the_run_failed_with_task_and_step(profile_copy: Path):
    lines = (profile_copy / "steps.csv").read_text().splitlines()
    header = lines[0].split(",")
    last = lines[-1].split(",")
    last[header.index("loss/b")] = "nan"
    last[header.index("lr")] = ""  # as the trainer writes a diverged step: no optimizer step
    (profile_copy / "steps.csv").write_text("\n".join([*lines[:-1], ",".join(last)]) + "\n")
    run = rebuild_summary(load_run(profile_copy))["runs"][0]
    assert run["status"] == "failed"
    assert run["error"] == "ew (seed 0): loss of task 'b' is nan at step 19."


def test_a_torn_last_line_is_dropped_and_names_stay_text(tmp_path: Path):
    p = tmp_path / "steps.csv"
    p.write_text(
        "method,seed,step,instrumented,time_ms,peak_memory_mb,loss/nan,grad_norm/nan,weight/nan\n"
        "NA,0,0,1,1.5,10.0,2.0,3.0,1.0\n"
        "NA,0,1,0,1.5,10.0,nan,,\n"
        "NA,0,2,1,1.5,10.0,2.0,3"
    )
    df = read_steps(p)
    assert list(df["method"]) == ["NA", "NA"] and list(df["step"]) == [0, 1]
    assert math.isnan(df["loss/nan"][1]) and math.isnan(df["grad_norm/nan"][1])
    assert df["loss/nan"][0] == pytest.approx(2.0)


def test_rebuilt_says_why(profile_copy: Path):
    from mtldiag.report.build import build_report

    forced = build_report(profile_copy, rebuild=True)
    assert forced.rebuilt and forced.summary["rebuilt"].endswith("(--rebuild)")
    (profile_copy / "summary.json").write_text("{not json")
    lost = build_report(profile_copy)
    assert lost.rebuilt
    assert lost.summary["rebuilt"].endswith("(summary.json was missing or unreadable)")
    on_disk = json.loads((profile_copy / "summary.json").read_text())
    assert on_disk["rebuilt"] == lost.summary["rebuilt"]


def test_a_run_killed_before_the_steps_asked_from_python_is_rebuilt_as_cut_short(
    profile_copy: Path,
):
    # Rows that stop at step 11 of the 20 recorded at the start: the run was cut short.
    steps = profile_copy / "steps.csv"
    lines = steps.read_text().splitlines(keepends=True)
    steps.write_text("".join(lines[:13]))  # header + steps 0..11
    run = rebuild_summary(load_run(profile_copy))["runs"][0]
    assert run["status"] == "interrupted" and "12 steps" in run["error"]


@pytest.fixture(scope="module")
def rep_compare(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-step comparison whose default space is the representation, one run on parameters."""
    from mtldiag.runs.compare import run_compare
    from mtldiag.spec import parse_spec

    from ..conftest import SYNTHETIC

    out = tmp_path_factory.mktemp("rep-compare") / "run"
    run_compare(
        parse_spec(SYNTHETIC),
        methods="ew,mgda@parameters",
        seeds=[0],
        steps=2,
        every=1,
        wrt="representation",
        out=out,
    )
    return out


def test_a_rebuilt_comparison_keeps_what_it_was_asked_so_it_resumes(
    rep_compare: Path, tmp_path: Path
):
    from mtldiag.report.build import build_report
    from mtldiag.runs.resume import resume_compare

    original = json.loads((rep_compare / "summary.json").read_text())["compare"]
    # --rebuild: the record of the summary it replaces is kept as it was.
    forced = tmp_path / "forced"
    shutil.copytree(rep_compare, forced)
    assert build_report(forced, rebuild=True).summary["compare"] == original
    # summary.json lost: the options from spec.yaml, the default space from the runs' rows.
    lost = tmp_path / "lost"
    shutil.copytree(rep_compare, lost)
    (lost / "summary.json").unlink()
    record = build_report(lost).summary["compare"]
    assert record == {**original, "spec_path": None}
    assert record["wrt"] == "representation"
    for folder in (forced, lost):  # was: internal error, KeyError 'compare'
        res = resume_compare(folder)
        assert [r["status"] for r in res.summary["runs"]] == ["ok", "ok"]
