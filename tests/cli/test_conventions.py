"""CLI conventions: --version, completion, plain help, --json, --quiet, plain progress in logs,
`methods` at 80 columns, profile's cost line."""

from __future__ import annotations

import json
import re
from pathlib import Path

from rich.console import Console
from typer.testing import CliRunner

from mtldiag import __version__
from mtldiag.cli import app
from mtldiag.cli.progress import PlainObserver, QuietObserver, RichObserver, make_observer

from ..conftest import SYNTHETIC, write_spec

runner = CliRunner()


def test_version():
    res = runner.invoke(app, ["--version"])
    assert res.exit_code == 0 and res.output.strip() == f"mtldiag {__version__}"


def test_completion_is_offered():
    assert "--install-completion" in runner.invoke(app, ["--help"]).output


def test_help_keeps_bracketed_defaults():
    res = runner.invoke(app, ["profile", "--help"], env={"COLUMNS": "100"})
    assert "Training steps [spec: profile.steps]." in res.output
    assert "--log" in res.output and "--json" in res.output and "--quiet" in res.output


def test_profile_json_is_the_summary_alone_on_stdout(tmp_path: Path):
    spec = write_spec(tmp_path, SYNTHETIC)
    res = runner.invoke(app, ["profile", str(spec), "--out", str(tmp_path / "r"), "--json"])
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout)
    assert summary["kind"] == "profile" and summary["runs"][0]["steps"] == 6
    assert "run directory" in res.stderr


def test_compare_quiet_prints_only_the_run_directory(tmp_path: Path):
    spec = write_spec(tmp_path, SYNTHETIC)
    out = tmp_path / "c"
    args = ["compare", str(spec), "--methods", "ew,pcgrad", "--steps", "2", "--out", str(out)]
    res = runner.invoke(app, [*args, "-q"])
    assert res.exit_code == 0, res.output
    assert res.stdout.strip().splitlines() == [f"run directory: {out}"]
    assert res.stderr == ""


def test_profile_prints_step_time_and_peak_memory(tmp_path: Path):
    spec = write_spec(tmp_path, SYNTHETIC)
    res = runner.invoke(app, ["profile", str(spec), "--out", str(tmp_path / "r")])
    assert res.exit_code == 0, res.output
    assert re.search(r"step time [\d.]+ ms \(median of 6\); peak memory [\d,.]+ MB", res.stdout)


def test_progress_is_plain_lines_when_not_a_terminal(tmp_path: Path):
    spec = write_spec(tmp_path, SYNTHETIC)
    res = runner.invoke(app, ["profile", str(spec), "--out", str(tmp_path / "r")])
    assert "ew (seed 0): 6 steps" in res.stderr
    assert re.search(r"ew \(seed 0\): ok, 6 steps in [\d.]+ s", res.stderr)
    assert "━" not in res.stderr  # no bar drawn into a log


def test_plain_observer_reports_steps_rate_and_losses():
    console = Console(record=True, width=200, force_terminal=False)
    obs = PlainObserver(console, every_s=0.0)
    obs.run_started("pcgrad", 1, 10)
    obs.step_done(4, {"a": 0.5, "b": 1.25})
    text = console.export_text()
    assert re.search(r"pcgrad \(seed 1\): step 5/10, [\d.]+ steps/s, a=0.5 b=1.25", text)


def test_plain_observer_names_the_run_that_finished_not_the_last_started():
    # --jobs 2: both runs start, then the first one ends.
    console = Console(record=True, width=200, force_terminal=False)
    obs = PlainObserver(console, every_s=0.0)
    obs.set_total(2)
    obs.run_started("ew", 0, 3)
    obs.run_started("pcgrad", 0, 3)
    obs.run_finished({"method": "ew", "seed": 0, "status": "failed", "steps": 3})
    last = console.export_text().splitlines()[-1]
    assert last.startswith("[1/2] ew (seed 0): failed, 3 steps in "), last


def test_observer_choice():
    assert isinstance(make_observer(Console(force_terminal=True)), RichObserver)
    assert type(make_observer(Console(force_terminal=False))) is PlainObserver
    assert isinstance(make_observer(Console(force_terminal=True), quiet=True), QuietObserver)


def test_methods_fit_80_columns_in_plain_words():
    res = runner.invoke(app, ["methods"], env={"COLUMNS": "80"})
    assert res.exit_code == 0
    assert max(len(line) for line in res.output.splitlines()) <= 80
    assert "pcgrad  gradient method, T backward" in res.output
    assert "c (default 0.4)" in res.output  # CAGrad's hyper-parameter and its default


def test_methods_say_which_hyper_parameters_are_required_and_which_optional():
    res = runner.invoke(app, ["methods"], env={"COLUMNS": "200"})
    assert "weights (required):" in res.output  # fixed cannot run without its weights
    assert "preference (optional):" in res.output  # upgrad/dualproj default to 1 each
    data = json.loads(runner.invoke(app, ["methods", "--json"]).output)
    by_name = {m["name"]: m for m in data}
    assert by_name["fixed"]["required"] == ["weights"]
    assert by_name["upgrad"]["required"] == [] and "preference" in by_name["upgrad"]["hyperparams"]
