"""``--wrt representation`` through profile and compare: labelled in summary.json, the exact
step for a weighting method, one representation "layer", and bad modules refused (exit 2)."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mtldiag.cli import app
from mtldiag.errors import SpecError
from mtldiag.report.content import build_content
from mtldiag.report.tables import pair_data, task_data
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
