"""``--wrt representation`` through profile and compare: labelled in summary.json, the exact
step for a weighting method, one representation "layer", and bad modules refused (exit 2)."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mtldiag.cli import app
from mtldiag.errors import SpecError
from mtldiag.report.content import build_content
from mtldiag.report.tables import pair_data, runs_data, task_data
from mtldiag.runs.compare import run_compare
from mtldiag.runs.profile import run_profile
from mtldiag.spec import parse_spec

from ..conftest import SYNTHETIC, write_spec


def _losses(run_dir: Path) -> list[float]:
    with open(run_dir / "steps.csv", newline="") as f:
        return [float(r["loss/a"]) for r in csv.DictReader(f)]


def test_profile_in_representation_mode_is_labelled_and_ew_takes_the_same_steps(tmp_path: Path):
    spec = parse_spec(SYNTHETIC)
    rep = run_profile(spec, out=tmp_path / "rep", wrt="representation", steps=5).summary
    par = run_profile(spec, out=tmp_path / "par", wrt="parameters", steps=5).summary
    assert (rep["jacobian"], par["jacobian"]) == ("representation", "parameters")
    assert rep["layers"] == ["representation"] and par["layers"] == ["encoder"]
    # equal weights: dL/dθ = Σ (dL_i/dz) dz/dθ exactly, so the same training (to rounding)
    assert _losses(tmp_path / "rep") == pytest.approx(_losses(tmp_path / "par"), rel=1e-5)
    # ... but representation-space norms are not parameter-space norms
    assert rep["runs"][0]["grad_norm_mean"] != pytest.approx(par["runs"][0]["grad_norm_mean"])


def test_compare_runs_every_method_on_the_representation(tmp_path: Path):
    spec = parse_spec({**SYNTHETIC, "representation": "encoder"})
    res = run_compare(spec, methods="mgda,pcgrad,graddrop", steps=4, every=2, out=tmp_path / "r")
    assert res.summary["jacobian"] == "representation"
    assert [r["status"] for r in res.summary["runs"]] == ["ok", "ok", "ok"]
    for run in res.summary["runs"]:
        assert all(list(p["layers"]) == ["representation"] for p in run["pairs"])


def test_a_missing_representation_module_is_refused(tmp_path: Path):
    with pytest.raises(SpecError, match="representation 'trunk' is not a module"):
        run_profile(parse_spec({**SYNTHETIC, "representation": "trunk"}), out=tmp_path / "x")
    spec = write_spec(tmp_path, {**SYNTHETIC, "representation": "trunk"})
    res = CliRunner().invoke(app, ["profile", str(spec), "--out", str(tmp_path / "y")])
    assert res.exit_code == 2 and "is not a module of the model" in res.output
    assert res.output.strip().startswith("error:") and len(res.output.strip().splitlines()) <= 2
    bad = CliRunner().invoke(app, ["profile", str(spec), "--wrt", "params"])
    assert bad.exit_code == 2 and "--wrt 'params' is not one of" in bad.output


def test_representation_numbers_are_labelled_in_tables_findings_and_report(tmp_path: Path):
    spec = parse_spec(SYNTHETIC)
    rep = run_profile(spec, out=tmp_path / "rep", wrt="representation", steps=5).summary
    par = run_profile(spec, out=tmp_path / "par", wrt="parameters", steps=5).summary
    assert "shared representation" in task_data(rep).title
    assert "shared representation" in pair_data(rep).title
    assert "representation" not in task_data(par).title + pair_data(par).title
    rep_text = " ".join(f["message"] for f in rep["diagnosis"])
    par_text = " ".join(f["message"] for f in par["diagnosis"])
    assert "pulls the shared representation" in rep_text  # the synthetic tasks differ 10x
    assert "pulls the shared parameters" in par_text
    facts = dict(build_content(rep, [], []).facts)
    assert facts["gradients w.r.t."] == "shared representation"


# -- one comparison, both spaces: mgda beside mgda@representation ---------------------------

MIXED = {"methods": "ew,mgda,mgda@representation", "seeds": [0], "steps": 4, "every": 1}


def _rows_of(run_dir: Path, name: str, label: str) -> list[dict[str, str]]:
    with open(run_dir / name, newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["method"] == label]
    for r in rows:
        r.pop("method")
        for k in ("time_ms", "peak_memory_mb"):
            r.pop(k, None)
    return rows


@pytest.fixture(scope="module")
def mixed(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("mixed") / "run"
    run_compare(parse_spec(SYNTHETIC), out=out, **MIXED)
    return out


def test_a_method_suffix_sets_its_runs_space_and_each_run_says_it(mixed: Path):
    summary = json.loads((mixed / "summary.json").read_text())
    assert summary["jacobian"] == "mixed" and summary["compare"]["wrt"] == "parameters"
    assert summary["layers"] == ["encoder", "representation"]
    spaces = {r["method"]: r["jacobian"] for r in summary["runs"]}
    assert spaces == {
        "ew": "parameters",
        "mgda": "parameters",
        "mgda@representation": "representation",
    }
    for run in summary["runs"]:
        want = ["representation"] if run["jacobian"] == "representation" else ["encoder"]
        assert all(list(p["layers"]) == want for p in run["pairs"]), run["method"]


def test_each_space_trains_as_a_comparison_of_that_space_alone(mixed: Path, tmp_path: Path):
    # The mixed comparison's mgda@representation run is the --wrt representation run of mgda,
    # row for row, and its mgda run the --wrt parameters one: spaces never leak between runs.
    spec = parse_spec(SYNTHETIC)
    one = {**MIXED, "methods": "mgda"}
    run_compare(spec, out=tmp_path / "rep", wrt="representation", **one)
    run_compare(spec, out=tmp_path / "par", wrt="parameters", **one)
    for name in ("steps.csv", "pairs.csv"):
        assert _rows_of(mixed, name, "mgda@representation") == _rows_of(
            tmp_path / "rep", name, "mgda"
        )
        assert _rows_of(mixed, name, "mgda") == _rows_of(tmp_path / "par", name, "mgda")
    # and the two spaces really differ for MGDA (not the same numbers under two names)
    assert _rows_of(tmp_path / "rep", "steps.csv", "mgda") != _rows_of(
        tmp_path / "par", "steps.csv", "mgda"
    )


def test_a_mixed_comparison_says_each_runs_space_in_the_report(mixed: Path):
    summary = json.loads((mixed / "summary.json").read_text())
    facts = dict(build_content(summary, [], []).facts)
    assert facts["gradients w.r.t."].startswith("mixed: the shared parameters, except in runs")
    table = runs_data(summary)
    col = table.headers.index("gradients w.r.t.")
    assert [r[col] for r in table.rows] == ["parameters", "parameters", "representation"]
    # the one-run tables describe the reference run (ew): parameter space, no z note
    assert "representation" not in pair_data(summary).title
    # the conflict plot holds both spaces' runs: its caption says which is which
    from mtldiag.report.plots import style
    from mtldiag.report.plots.training import conflict_over_training
    from mtldiag.rundir.load import load_run

    data = load_run(mixed)
    _, caption = conflict_over_training(data, style.palette(style.run_labels(data)))
    assert "on the whole shared trunk, or w.r.t. the shared representation z for the runs " in (
        caption
    )
    assert "labelled @representation" in caption


def test_a_mixed_comparison_rebuilds_and_resumes_with_each_runs_space(mixed: Path, tmp_path: Path):
    from mtldiag.rundir.load import load_run
    from mtldiag.rundir.rebuild import rebuild_summary
    from mtldiag.runs.resume import resume_compare

    original = json.loads((mixed / "summary.json").read_text())
    rebuilt = rebuild_summary(load_run(mixed))
    assert rebuilt["jacobian"] == "mixed" and rebuilt["layers"] == original["layers"]
    for new, old in zip(rebuilt["runs"], original["runs"], strict=True):
        assert new["jacobian"] == old["jacobian"]
        assert [list(p["layers"]) for p in new["pairs"]] == [
            list(p["layers"]) for p in old["pairs"]
        ]

    # A comparison stopped after its first run: --resume runs the others in their own space.
    stopped = tmp_path / "stopped"
    shutil.copytree(mixed, stopped)
    cut = {**original, "status": "interrupted", "runs": original["runs"][:1]}
    (stopped / "summary.json").write_text(json.dumps(cut))
    res = resume_compare(stopped)
    assert [(r["method"], r["jacobian"]) for r in res.summary["runs"]] == [
        (r["method"], r["jacobian"]) for r in original["runs"]
    ]
    for name in ("steps.csv", "pairs.csv"):
        for label in ("mgda", "mgda@representation"):
            assert _rows_of(stopped, name, label) == _rows_of(mixed, name, label)


def test_profile_takes_the_space_of_its_method_and_bad_suffixes_are_exit_2(tmp_path: Path):
    spec = parse_spec(SYNTHETIC)
    rep = run_profile(spec, out=tmp_path / "p", method="mgda@representation", steps=2).summary
    assert rep["jacobian"] == "representation" and rep["runs"][0]["method"] == "mgda@representation"
    path = write_spec(tmp_path, SYNTHETIC)
    for argv in (
        ["compare", str(path), "--methods", "ew,mgda@rep", "--steps", "2"],
        ["profile", str(path), "--method", "mgda@", "--steps", "2"],
    ):
        res = CliRunner().invoke(app, argv)
        assert res.exit_code == 2, res.output
        assert "is not a gradient space" in res.output and "@representation" in res.output
        assert "Traceback" not in res.output


def test_a_mixed_comparison_in_worker_processes_writes_what_one_process_writes(
    mixed: Path, tmp_path: Path
):
    # Each job carries its run's space to its worker: --jobs 2 is --jobs 1, row for row.
    run_compare(parse_spec(SYNTHETIC), out=tmp_path / "j2", jobs=2, **MIXED)
    for name in ("steps.csv", "pairs.csv"):
        for label in ("ew", "mgda", "mgda@representation"):
            assert _rows_of(tmp_path / "j2", name, label) == _rows_of(mixed, name, label)
    runs = json.loads((tmp_path / "j2" / "summary.json").read_text())["runs"]
    assert [r["jacobian"] for r in runs] == ["parameters", "parameters", "representation"]
