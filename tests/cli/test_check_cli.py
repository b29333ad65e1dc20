"""`mtldiag check` through Typer's runner: exit codes, report files, an end-to-end regression."""

from __future__ import annotations

import copy
import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from mtldiag.cli import app

from ..analysis.test_check import compare_summary, profile_summary
from ..conftest import SYNTHETIC, write_spec

runner = CliRunner()


def write_run(folder: Path, summary: dict[str, Any], checks: list | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "summary.json").write_text(json.dumps(summary))
    if checks is not None:
        (folder / "spec.yaml").write_text(yaml.safe_dump({"name": "toy", "checks": checks}))
    return folder


def write_rules(path: Path, rules: list[dict[str, Any]]) -> Path:
    path.write_text(yaml.safe_dump(rules, sort_keys=False))
    return path


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    return write_run(tmp_path / "run", profile_summary())


def test_pass_exit_0(run_dir: Path, tmp_path: Path):
    rules = write_rules(tmp_path / "r.yaml", [{"metric": "conflict_rate[a,b]", "max": 0.6}])
    res = runner.invoke(app, ["check", str(run_dir), "--rules", str(rules)])
    assert res.exit_code == 0, res.output
    assert "PASS" in res.stdout and "check: all 1 rule passed" in res.stdout


def test_fail_exit_1_names_the_rule_and_numbers(run_dir: Path, tmp_path: Path):
    rules = write_rules(
        tmp_path / "r.yaml",
        [{"metric": "conflict_rate[a,b]", "max": 0.6}, {"metric": "final_loss[b]", "max": 2.5}],
    )
    res = runner.invoke(app, ["check", str(run_dir), "--rules", str(rules)])
    assert res.exit_code == 1, res.output
    assert "FAIL final_loss[b] max 2.5: 3 > 2.5 (max 2.5)" in res.stdout
    assert "check: 1 of 2 rules failed" in res.stdout


def test_rules_default_to_the_run_spec_checks(tmp_path: Path):
    run = write_run(
        tmp_path / "run", profile_summary(), checks=[{"metric": "grad_norm_ratio", "max": 4}]
    )
    res = runner.invoke(app, ["check", str(run)])
    assert res.exit_code == 1 and "grad_norm_ratio max 4" in res.stdout


def errors(res) -> list[str]:
    """The non-empty lines of a failed command's output."""
    return [line for line in res.output.splitlines() if line.strip()]


@pytest.mark.parametrize(
    ("rules", "baseline", "message", "hint"),
    [
        (
            [{"metric": "conflict", "max": 1}],
            None,
            "unknown metric 'conflict'. Did you mean 'conflict_rate'?",
            "valid metrics: conflict_rate[a,b]",
        ),
        (
            [{"metric": "cosine_mean[a,z]", "max": 1}],
            None,
            "task 'z' is not in the run",
            "its tasks: a, b, c",
        ),
        (
            [{"metric": "gms_mean@head", "max": 1}],
            None,
            "layer 'head' is not a shared layer of the run",
            "its shared layers: trunk.0, trunk.2",
        ),
        (
            [{"metric": "final_loss[a]", "max_increase": "5 percent"}],
            "same",
            "malformed bound max_increase: '5 percent'",
            "a percentage of the baseline in quotes",
        ),
        (
            [{"metric": "final_loss[a]", "max_increase": "5%"}],
            None,
            "which needs a baseline",
            "pass --baseline",
        ),
        (
            [{"metric": "final_loss[a]", "max": 1}],
            "two-task",
            "the baseline's tasks (a, b) differ from the run's (a, b, c).",
            "of the same problem",
        ),
        ([{"metric": "delta_m", "max": 0}], None, "is not a compare run", "need `mtldiag compare`"),
    ],
)
def test_bad_input_exit_2_one_line(run_dir: Path, tmp_path: Path, rules, baseline, message, hint):
    args = ["check", str(run_dir), "--rules", str(write_rules(tmp_path / "r.yaml", rules))]
    if baseline == "same":
        args += ["--baseline", str(run_dir)]
    elif baseline == "two-task":
        base = profile_summary()
        base["tasks"] = ["a", "b"]
        args += ["--baseline", str(write_run(tmp_path / "base", base))]
    res = runner.invoke(app, args)
    assert res.exit_code == 2, res.output
    lines = errors(res)
    assert lines[0].startswith("error:") and message in lines[0] and "Traceback" not in res.output
    assert len(lines) == (2 if hint else 1)
    if hint:
        assert lines[1].strip().startswith("hint:") and hint in lines[1]


def test_missing_run_and_missing_summary_exit_2(tmp_path: Path):
    res = runner.invoke(app, ["check", str(tmp_path / "nope")])
    assert res.exit_code == 2 and "run '" in res.output and "does not exist" in res.output
    (tmp_path / "empty").mkdir()
    res = runner.invoke(app, ["check", str(tmp_path / "empty")])
    assert res.exit_code == 2 and "has no summary.json" in res.output
    assert f"mtldiag report {tmp_path / 'empty'}" in res.output.replace("\n", "")


def test_no_rules_anywhere_exit_2(run_dir: Path):
    res = runner.invoke(app, ["check", str(run_dir)])
    assert res.exit_code == 2 and "no rules" in res.output and "--rules" in res.output


def test_bad_format_exit_2(run_dir: Path, tmp_path: Path):
    rules = write_rules(tmp_path / "r.yaml", [{"metric": "delta_m", "max": 0}])
    res = runner.invoke(app, ["check", str(run_dir), "--rules", str(rules), "--format", "xml"])
    assert res.exit_code == 2 and "--format 'xml' is not one of: table, json" in res.output


def test_report_files_and_step_summary(run_dir: Path, tmp_path: Path, monkeypatch):
    step_summary = tmp_path / "step_summary.md"
    step_summary.write_text("earlier step\n")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(step_summary))
    rules = write_rules(
        tmp_path / "r.yaml",
        [
            {"metric": "conflict_rate", "max": 0.4},
            {"metric": "final_loss[b]", "max_increase": "5%"},
            {"metric": "peak_memory_mb", "max": 1000},
        ],
    )
    junit, md = tmp_path / "out" / "junit.xml", tmp_path / "out" / "check.md"
    res = runner.invoke(
        app,
        [
            "check",
            str(run_dir),
            "--rules",
            str(rules),
            "--baseline",
            str(run_dir),
            "--junit",
            str(junit),
            "--markdown",
            str(md),
        ],
    )
    assert res.exit_code == 1, res.output
    suite = ET.parse(junit).getroot().find("testsuite")
    assert suite is not None and (suite.get("tests"), suite.get("failures")) == ("3", "1")
    failed = [c.get("name") for c in suite.iter("testcase") if c.find("failure") is not None]
    assert failed == ["conflict_rate max 0.4"]
    text = md.read_text()
    assert text.startswith("### mtldiag check: ❌ failed — 1 of 3 rules failed")
    assert f"against baseline `{run_dir}`" in text
    assert step_summary.read_text() == "earlier step\n" + text + "\n"  # appended, not replaced


def test_json_format_on_stdout(tmp_path: Path, monkeypatch):
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    run = write_run(tmp_path / "run", compare_summary())
    rules = write_rules(
        tmp_path / "r.yaml",
        [
            {"metric": "delta_m", "max": -1, "method": "pcgrad"},
            {"metric": "metric[a]", "max": 0.45},
        ],
    )
    res = runner.invoke(app, ["check", str(run), "--rules", str(rules), "--format", "json"])
    assert res.exit_code == 1
    data = json.loads(res.stdout)
    assert [(r["method"], r["value"], r["passed"]) for r in data["results"]] == [
        ("pcgrad", -3.2, True),
        ("ew", 0.5, False),
    ]


# --- end to end: a real baseline, a regressed run, and check -----------------------------------

STEPS = "30"
E2E_RULES = [
    # should FAIL: the 10x target scale multiplies task a's loss by ~100 and its gradient by ~10
    {"metric": "final_loss[a]", "max_increase": "50%"},
    {"metric": "grad_norm_ratio", "max_increase": "100%"},
    # should FAIL: a's larger gradient now fights b's on most steps (baseline: never)...
    {"metric": "conflict_rate[a,b]", "max_increase": 0.2},
    # ...and the magnitudes differ a lot (baseline: near-equal norms, GMS ~1)
    {"metric": "gms_mean", "min": 0.5},
    # should PASS: b and c do not get more conflicting, c's loss stays small, memory alike
    {"metric": "conflict_rate[b,c]", "max_increase": 0.1},
    {"metric": "cosine_mean[b,c]@encoder", "max_decrease": 0.2},
    {"metric": "final_loss[c]", "max": 5.0},
    {"metric": "peak_memory_mb", "max_increase": "50%"},
]
SHOULD_FAIL = [
    "final_loss[a] max_increase 50%",
    "grad_norm_ratio max_increase 100%",
    "conflict_rate[a,b] max_increase 0.2",
    "gms_mean min 0.5",
]


def synthetic(tmp_path: Path, name: str, scale: float) -> Path:
    data = copy.deepcopy(SYNTHETIC)
    data["data"]["kwargs"].update(cosine=0.5, scale=scale)
    return write_spec(tmp_path, data, name)


def test_end_to_end_regression_fails_exactly_the_right_rules(tmp_path: Path, monkeypatch):
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    rules = write_rules(tmp_path / "rules.yaml", E2E_RULES)
    base, bad = tmp_path / "base", tmp_path / "bad"
    res = runner.invoke(
        app,
        [
            "profile",
            str(synthetic(tmp_path, "base.yaml", 1.0)),
            "--steps",
            STEPS,
            "--out",
            str(base),
        ],
    )
    assert res.exit_code == 0, res.output

    # The baseline against itself passes every rule.
    res = runner.invoke(app, ["check", str(base), "--baseline", str(base), "--rules", str(rules)])
    assert res.exit_code == 0, res.output

    # The same problem with targets 10x larger for task a (a 100x loss scale), checked in one go.
    bad_spec = synthetic(tmp_path, "bad.yaml", 10.0)
    res = runner.invoke(
        app,
        [
            "profile",
            str(bad_spec),
            "--steps",
            STEPS,
            "--out",
            str(bad),
            "--rules",
            str(rules),
            "--baseline",
            str(base),
        ],
    )
    assert res.exit_code == 1, res.output

    junit = tmp_path / "junit.xml"
    res = runner.invoke(
        app,
        [
            "check",
            str(bad),
            "--baseline",
            str(base / "summary.json"),
            "--rules",
            str(rules),
            "--junit",
            str(junit),
        ],
    )
    assert res.exit_code == 1, res.output
    cases = list(ET.parse(junit).getroot().iter("testcase"))
    assert len(cases) == len(E2E_RULES)
    failed = [c.get("name") for c in cases if c.find("failure") is not None]
    assert failed == SHOULD_FAIL


def test_interrupted_run_is_checked_with_a_note(tmp_path: Path, monkeypatch):
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    summary = profile_summary()
    summary["status"] = "interrupted"
    run = write_run(tmp_path / "run", summary)
    rules = write_rules(tmp_path / "r.yaml", [{"metric": "grad_norm_ratio", "max": 6}])
    md = tmp_path / "c.md"
    res = runner.invoke(app, ["check", str(run), "--rules", str(rules), "--markdown", str(md)])
    assert res.exit_code == 0, res.output
    assert "note: the run's status is 'interrupted'" in res.stdout
    assert "> The run's status is **interrupted**" in md.read_text()
