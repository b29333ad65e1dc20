"""The CLI through Typer's test runner: exit codes and one-line messages."""

import json
from pathlib import Path

from typer.testing import CliRunner

from mtldiag.cli import app

from ..conftest import SYNTHETIC, write_spec

runner = CliRunner()


def test_profile_sample_spec_writes_run_and_prints_diagnosis(tmp_path: Path):
    spec = Path(__file__).parents[2] / "sample_configs" / "synthetic.yaml"
    out = tmp_path / "run"
    res = runner.invoke(
        app, ["profile", str(spec), "--steps", "20", "--out", str(out), "--device", "cpu"]
    )
    assert res.exit_code == 0, res.output
    assert "Diagnosis" in res.output and "conflict" in res.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["runs"][0]["steps"] == 20


def test_missing_spec_is_one_line_exit_2(tmp_path: Path):
    res = runner.invoke(app, ["profile", str(tmp_path / "missing.yaml")])
    assert res.exit_code == 2
    assert "does not exist" in res.output and "Traceback" not in res.output


def test_no_spec_and_no_default_says_how_to_start(tmp_path: Path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    res = runner.invoke(app, ["profile"])
    assert res.exit_code == 2 and "mtldiag.yaml" in res.output


def test_bad_key_exit_2_with_suggestion(tmp_path: Path):
    p = write_spec(tmp_path, {**SYNTHETIC, "sharde": "auto"})
    res = runner.invoke(app, ["validate", str(p)])
    assert res.exit_code == 2 and "Did you mean 'shared'?" in res.output


def test_debug_shows_traceback_and_keeps_the_exit_code(tmp_path: Path):
    p = write_spec(tmp_path, {**SYNTHETIC, "sharde": "auto"})
    res = runner.invoke(app, ["--debug", "validate", str(p)])
    assert res.exit_code == 2, res.output
    assert "Traceback (most recent call last)" in res.output and "SpecError" in res.output
    assert "Did you mean 'shared'?" in res.output


def test_validate_prints_losses_and_shared_layers(tmp_path: Path):
    p = write_spec(tmp_path, SYNTHETIC)
    res = runner.invoke(app, ["validate", str(p)])
    assert res.exit_code == 0, res.output
    assert "encoder" in res.output and "32 shared" in res.output  # 4 x 8 encoder weights


def test_shared_glob_matching_nothing_exit_2(tmp_path: Path):
    p = write_spec(tmp_path, {**SYNTHETIC, "shared": ["decoder.*"]})
    res = runner.invoke(app, ["validate", str(p)])
    assert res.exit_code == 2 and "matches no trainable parameter" in res.output


def test_unwritable_out_dir_exit_2(tmp_path: Path):
    p = write_spec(tmp_path, SYNTHETIC)
    blocker = tmp_path / "file"
    blocker.write_text("x")
    res = runner.invoke(app, ["profile", str(p), "--out", str(blocker / "run"), "--steps", "1"])
    assert res.exit_code == 2 and "cannot write the run directory" in res.output
