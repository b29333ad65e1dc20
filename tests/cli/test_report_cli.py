"""``mtldiag report RUN_DIR`` through Typer's runner, and the tables ``profile`` prints."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from typer.testing import CliRunner

from mtldiag.cli import app

from ..conftest import SYNTHETIC, write_spec

runner = CliRunner()


def _profile(tmp_path: Path) -> tuple[Path, str]:
    spec = write_spec(tmp_path, {**SYNTHETIC, "profile": {"steps": 12, "every": 1}})
    out = tmp_path / "run"
    res = runner.invoke(app, ["profile", str(spec), "--out", str(out)])
    assert res.exit_code == 0, res.output
    return out, res.output


def test_profile_prints_task_and_pair_tables_and_writes_the_report(tmp_path: Path):
    out, output = _profile(tmp_path)
    assert "Tasks" in output and "loss ratio" in output and "norm ratio" in output
    assert "Task pairs" in output and "conflict rate" in output and "mean GMS" in output
    assert (out / "report.html").is_file() and (out / "report.md").is_file()
    assert (out / "plots" / "loss_curves.png").is_file()


def test_report_on_a_truncated_run_rebuilds_summary(tmp_path: Path):
    out, _ = _profile(tmp_path)
    (out / "summary.json").unlink()
    shutil.rmtree(out / "plots")
    (out / "report.html").unlink()
    lines = (out / "steps.csv").read_text().splitlines(keepends=True)
    # keep the header and 8 steps, then half of the next row: a crash mid-write
    (out / "steps.csv").write_text("".join(lines[:9]) + lines[9][:12])
    res = runner.invoke(app, ["report", str(out)])
    assert res.exit_code == 0, res.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "interrupted"
    run = summary["runs"][0]
    assert run["steps"] == 8 and run["status"] == "interrupted"  # asked for 12 (spec.yaml)
    assert summary["diagnosis"], "the rebuilt summary carries a diagnosis"
    assert (out / "report.html").is_file() and (out / "plots" / "loss_curves.png").is_file()
    assert "rebuilt" in res.output and "run status: interrupted" in res.output


def test_report_on_a_complete_run_keeps_its_summary(tmp_path: Path):
    out, _ = _profile(tmp_path)
    before = (out / "summary.json").read_text()
    (out / "report.md").unlink()
    res = runner.invoke(app, ["report", str(out)])
    assert res.exit_code == 0, res.output
    assert (out / "summary.json").read_text() == before
    assert (out / "report.md").is_file() and "rebuilt" not in res.output


def test_report_on_a_missing_dir_exits_2_with_a_hint(tmp_path: Path):
    res = runner.invoke(app, ["report", str(tmp_path / "nope")])
    assert res.exit_code == 2
    assert "does not exist" in res.output and "hint:" in res.output
    assert "Traceback" not in res.output


def test_report_on_a_dir_without_records_exits_2(tmp_path: Path):
    (tmp_path / "steps.csv").write_text("method,seed,step\n")
    res = runner.invoke(app, ["report", str(tmp_path)])
    assert res.exit_code == 2 and "no summary.json and no recorded steps" in res.output


def test_profile_preview_and_method_warnings_print_once_and_reach_the_report(
    tmp_path: Path, monkeypatch
):
    # Every Nash-MTL solve fails: the run keeps the previous weights and carries a warning.
    from mtldiag.methods import _nash_mtl

    monkeypatch.setattr(_nash_mtl, "nash_weights", lambda g, *a, **k: (g[0] * 0 + 1.0, False))
    spec = write_spec(tmp_path, SYNTHETIC)
    out = tmp_path / "run"
    res = runner.invoke(
        app,
        [
            "profile",
            str(spec),
            "--method",
            "nash_mtl",
            "--preview",
            "--steps",
            "4",
            "--every",
            "2",
            "--out",
            str(out),
        ],
    )
    assert res.exit_code == 0, res.output
    summary = json.loads((out / "summary.json").read_text())
    (warning,) = summary["runs"][0]["warnings"]
    # a gradient method has the Gramian on every step, not only the 2 instrumented ones
    steps = summary["preview"]["steps"]
    assert steps == 4 and summary["runs"][0]["instrumented_steps"] == 2
    assert res.output.count("warning:") == 1 and res.output.count("on 4 of 4 steps") == 1
    assert res.output.count(f"Preview on the {steps} steps with a Jacobian") == 1
    page = (out / "report.html").read_text()
    assert "Preview: what each gradient method would do on these steps" in page
    assert page.count("on 4 of 4 steps") == 2  # the banner and the Runs table
    md = (out / "report.md").read_text()
    assert "## Preview: what each gradient method would do" in md and "on 4 of 4 steps" in md
    # `mtldiag report` prints the same summary the same way
    again = runner.invoke(app, ["report", str(out)])
    assert again.exit_code == 0, again.output
    assert again.output.count("warning:") == 1
    assert again.output.count(f"Preview on the {steps} steps with a Jacobian") == 1
