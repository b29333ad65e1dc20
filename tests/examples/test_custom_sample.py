"""The user-code sample (sample_configs/custom): a file next to the spec, the general
``losses:`` form, shared globs, a validation loader and an ``eval`` function, end to end."""

import json
from pathlib import Path

from typer.testing import CliRunner

from mtldiag.cli import app

SPEC = Path(__file__).parents[2] / "sample_configs" / "custom" / "spec.yaml"
runner = CliRunner()


def test_validate_finds_the_encoder_layers():
    res = runner.invoke(app, ["validate", str(SPEC), "--device", "cpu"])
    assert res.exit_code == 0, res.output
    assert "encoder.0" in res.output and "encoder.3" in res.output
    assert "2 tasks, 2,480 shared parameters in 2 layers" in res.output


def test_compare_uses_the_eval_function_and_its_directions(tmp_path: Path):
    out = tmp_path / "run"
    res = runner.invoke(
        app,
        [
            "compare",
            str(SPEC),
            "--methods",
            "ew,pcgrad",
            "--seeds",
            "0",
            "--steps",
            "6",
            "--every",
            "3",
            "--device",
            "cpu",
            "--out",
            str(out),
        ],
    )
    assert res.exit_code == 0, res.output
    cmp = json.loads((out / "summary.json").read_text())["comparison"]
    assert cmp["evaluation"] == "eval_fn"
    assert cmp["higher_is_better"] == {"cls": True, "recon": False}
    for row in cmp["rows"]:
        acc = row["metric"]["cls"]["mean"]
        assert 0.0 <= acc <= 1.0  # an accuracy from evaluate(), not a loss
