"""Every registered method trains through the real trainer (`run_profile`), and the CLI says
one clear line with exit 2 for every kind of bad method input."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest
import torch
import yaml
from typer.testing import CliRunner

import mtldiag.runs.profile as profile_mod
from mtldiag import methods
from mtldiag.cli import app
from mtldiag.runs.build import build_model
from mtldiag.runs.profile import run_profile
from mtldiag.spec import parse_spec

from ..conftest import SYNTHETIC, write_spec

# Methods that need per-run settings get them in the CLI's own string form.
CLI_FORM = {
    "fixed": "fixed:weights={a: 1, b: 0.5, c: 2}",
    "anneal": "anneal:schedules={b: {from: 0, to: 1, start: 1, end: 4}}",
}
VARIANTS = [
    "init_loss:source=theory",  # E[y²] of the MSE targets, from the label pass
    "gradnorm:layer=all",
    "uncertainty:variant=log1p",
    "pcgrad:reduction=mean",
    "mgda:normalization=loss+",
    "gradnormalize:norm=mean,alpha=1.5",
    "cagrad:c=0.4",
    # issue 16's options
    "sdmgrad:solver=sgd",
    "moco:weights_update=softmax,normalize=false",
    "stch:warmup=2",
    "fairgrad:alpha=2",
    "rgw:normalize=true",
    "config:reduction=mean",
]


@pytest.fixture
def no_report(monkeypatch: pytest.MonkeyPatch) -> None:
    # The HTML report (plots) is not what these tests are about and costs seconds per run.
    import mtldiag.report as report

    monkeypatch.setattr(report, "write_report", lambda *a, **k: None)


@pytest.fixture
def spy_prepare(monkeypatch: pytest.MonkeyPatch) -> list:
    """Keep the ``Prepared`` run_profile builds, to look at the trained model afterwards."""
    seen: list = []
    real = profile_mod.prepare

    def spy(*args, **kwargs):
        prep = real(*args, **kwargs)
        seen.append(prep)
        return prep

    monkeypatch.setattr(profile_mod, "prepare", spy)
    return seen


@pytest.mark.parametrize("method", [CLI_FORM.get(n, n) for n in methods.names()] + VARIANTS)
def test_every_method_trains_through_run_profile(method, tmp_path, no_report, spy_prepare):
    spec = parse_spec(SYNTHETIC)
    result = run_profile(spec, method=method, steps=6, every=2, out=tmp_path / "run")
    run = result.summary["runs"][0]
    assert result.summary["status"] == "complete"
    assert run["status"] == "ok" and run["error"] is None
    assert (run["steps"], run["instrumented_steps"]) == (6, 3)
    with open(result.run_dir / "steps.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 6
    loss_cols = [k for k in rows[0] if k.startswith("loss")]
    assert len(loss_cols) == 3
    assert all(math.isfinite(float(r[k])) for r in rows for k in loss_cols)
    # The shared trunk moved away from its initial weights (same seed: same initial build).
    (prep,) = spy_prepare
    initial = build_model(spec, spec.seed, torch.device("cpu"))
    before = dict(initial.named_parameters())
    moved = [
        float((p.detach() - before[n].detach()).abs().max())
        for n, p in zip(prep.selection.layout.names, prep.selection.layout.params, strict=True)
    ]
    assert all(math.isfinite(m) for m in moved) and max(moved) > 0, moved
    assert all(math.isfinite(float(p.detach().abs().max())) for p in prep.model.parameters())


def test_nash_mtl_failures_reach_the_summary_and_the_terminal(tmp_path, no_report, monkeypatch):
    # Force every solve to fail: the run still trains (previous / initial weights) and says so.
    from mtldiag.methods import _nash_mtl

    monkeypatch.setattr(_nash_mtl, "nash_weights", lambda g, *a, **k: (g[0] * 0 + 1.0, False))
    spec = write_spec(tmp_path, SYNTHETIC)
    res = CliRunner().invoke(
        app,
        [
            "profile",
            str(spec),
            "--method",
            "nash_mtl",
            "--steps",
            "4",
            "--every",
            "2",
            "--out",
            str(tmp_path / "run"),
        ],
    )
    assert res.exit_code == 0, res.output
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    (warning,) = summary["runs"][0]["warnings"]
    assert "on 4 of 4 steps (first: step 0)" in warning and "kept the previous weights" in warning
    assert "warning:" in res.output and "on 4 of 4 steps" in res.output


# ---- the CLI: hyper-parameters from the command line and the spec; bad input ----------


def profile_cli(tmp_path: Path, *args: str, spec: dict | None = None):
    path = write_spec(tmp_path, spec or SYNTHETIC)
    out = tmp_path / "run"
    res = CliRunner().invoke(
        app, ["profile", str(path), "--steps", "2", "--every", "1", "--out", str(out), *args]
    )
    return res, out


def test_cli_method_with_hyperparameters_and_preview(tmp_path, no_report):
    res, out = profile_cli(tmp_path, "--method", "cagrad:c=0.4", "--preview")
    assert res.exit_code == 0, res.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["profile"]["method"] == "cagrad:c=0.4"
    pv = summary["preview"]
    assert pv["steps"] == 2 and pv["tasks"] == ["a", "b", "c"]
    names = [r["method"] for r in pv["methods"]]
    assert names[0] == "ew" and {"pcgrad", "mgda", "upgrad", "nash_mtl"} <= set(names)
    mgda = next(r for r in pv["methods"] if r["method"] == "mgda")
    assert mgda["all_decrease_rate"] == 1.0  # MGDA never conflicts, on any recorded step
    assert "Preview on the 2 steps with a Jacobian" in res.output


def test_spec_methods_section_sets_hyperparameters(tmp_path, no_report, spy_prepare, monkeypatch):
    created: list = []
    real = profile_mod.create_method

    def spy(ms):
        m = real(ms)
        created.append(m)
        return m

    monkeypatch.setattr(profile_mod, "create_method", spy)
    spec = {**SYNTHETIC, "method": "gradnorm", "methods": {"gradnorm": {"alpha": 0.7}}}
    res, out = profile_cli(tmp_path, spec=spec)
    assert res.exit_code == 0, res.output
    assert {m.alpha for m in created} == {0.7}  # the spec's hyper-parameter, every instance
    assert json.loads((out / "summary.json").read_text())["profile"]["method"] == (
        "gradnorm:alpha=0.7"
    )


@pytest.mark.parametrize(
    ("method", "message"),
    [
        ("cagrad:c=-1", "error: Parameter `c` should be a non-negative float. Found `c = -1`."),
        ("cagrad:c=abc", "error: Parameter `c` should be a non-negative float. Found `c = 'abc'`."),
        (
            "pcgrad:foo=1",
            "error: Method 'pcgrad' has no hyper-parameter `foo`. "
            "Valid hyper-parameters: reduction.",
        ),
        (
            "pcgard",
            "error: Unknown method 'pcgard'. Did you mean 'pcgrad'? Valid methods: ew, fixed,",
        ),
        (
            "fixed:weights={a: 1, b: 2, cc: 1}",
            "error: fixed: `weights` names unknown task 'cc' (did you mean 'c'?) and has no "
            "entry for task 'c'; the run's tasks are 'a', 'b', 'c'.",
        ),
        ("anneal:schedules={z: {to: 1}}", "error: anneal: `schedules` names unknown task 'z'"),
        ("gradnorm:alpha=true", "error: Parameter `alpha` should be a non-negative float."),
    ],
)
def test_bad_method_input_is_one_line_and_exit_2(tmp_path, method, message):
    res, out = profile_cli(tmp_path, "--method", method)
    assert res.exit_code == 2, res.output
    lines = [ln for ln in res.output.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and lines[0].startswith(message), res.output
    assert "Traceback" not in res.output
    assert not out.exists()  # nothing recorded before the method was known to fit the run


def test_bad_hyperparameter_in_the_spec_is_exit_2(tmp_path):
    spec = {**SYNTHETIC, "method": "mgda", "methods": {"mgda": {"normalization": "l3"}}}
    res, _ = profile_cli(tmp_path, spec=spec)
    assert res.exit_code == 2
    assert (
        "Parameter `normalization` should be one of none | l2 | loss | loss+. Found "
        "`normalization = 'l3'`. Did you mean 'l2'?" in " ".join(res.output.split())
    )


def test_methods_command_lists_every_method(tmp_path):
    res = CliRunner().invoke(app, ["methods", "--json"])
    assert res.exit_code == 0
    rows = {r["name"]: r for r in json.loads(res.output)}
    assert list(rows) == methods.names()
    assert rows["cagrad"]["hyperparams"] == {"c": 0.4, "rescale": 1, "reduction": "sum"}
    assert rows["gradnorm"]["cost"].startswith("1 backward + T head passes for its norms")
    assert rows["nash_mtl"]["stateful"] and not rows["imtl"]["stateful"]
    assert yaml.safe_load(json.dumps(rows["famo"]["aliases"])) == []
    bad = CliRunner().invoke(app, ["methods", "--family", "weightng"])
    assert bad.exit_code == 2
