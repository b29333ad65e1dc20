"""Bad training options through the CLI: exit 2, one message naming the key, no traceback;
YAML 1.2 numbers (``1e-3``) are numbers."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from mtldiag.cli import app
from mtldiag.spec import load_spec

from ..conftest import SYNTHETIC, write_spec

runner = CliRunner()


def write_text_spec(tmp_path: Path, extra: str) -> Path:
    """The synthetic spec with ``extra`` YAML lines appended (so YAML reads the numbers)."""
    path = write_spec(tmp_path, {k: v for k, v in SYNTHETIC.items() if k != "optimizer"})
    path.write_text(path.read_text() + extra)
    return path


def test_exponent_numbers_read_as_numbers(tmp_path: Path) -> None:
    p = write_text_spec(
        tmp_path,
        "optimizer: {name: adamw, lr: 1e-3, weight_decay: 5e-4, eps: 1E-8}\n"
        "scheduler: {name: StepLR, step_size: 1E+2}\n"
        "clip_grad_norm: 1e0\n",
    )
    spec = load_spec(p)
    assert spec.optimizer.name == "AdamW"
    assert spec.optimizer.kwargs == {"lr": 1e-3, "weight_decay": 5e-4, "eps": 1e-8}
    assert spec.scheduler.kwargs == {"step_size": 100}
    assert spec.train.clip_grad_norm == 1.0
    assert runner.invoke(app, ["validate", str(p)]).exit_code == 0


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        ("optimizer: {name: adamm, lr: 0.1}", ["'optimizer.name'", "Did you mean 'Adam'?"]),
        ("optimizer: {name: sgd, lr: fast}", ["'optimizer.lr': must be a number, not 'fast'"]),
        ("optimizer: {name: sgd, lrr: 0.1}", ["'optimizer.lrr'", "Did you mean 'lr'?"]),
        ("optimizer: {name: sgd, lr: -1}", ["'optimizer'", "SGD", "-1"]),
        ("optimizer: {name: adam, betas: 0.9}", ["'optimizer.betas'", "must be a list"]),
        ("optimizer: {factory: nope}", ["'optimizer.factory'", "module:fn"]),
        ("scheduler: {name: cosinelr, T_max: 10}", ["'scheduler.name'", "CosineAnnealingLR"]),
        ("scheduler: {name: CosineAnnealingLR}", ["'scheduler.T_max'", "required"]),
        ("scheduler: {name: StepLR, step_size: 2, interval: batch}", ["'scheduler.interval'"]),
        ("scheduler: {name: StepLR, step_size: soon}", ["'scheduler.step_size'", "number"]),
        ("accumulate: 0", ["'accumulate'", ">= 1"]),
        ("accumulate: 2.5", ["'accumulate'", "whole number"]),
        ("clip_grad_norm: 0", ["'clip_grad_norm'", "> 0"]),
        ("clip_grad_value: -1e-2", ["'clip_grad_value'", "> 0"]),
        ("missing: maybe", ["'missing'", "error or skip"]),
    ],
)
def test_bad_training_option_is_exit_2_naming_the_key(
    tmp_path: Path, extra: str, words: list[str]
) -> None:
    p = write_text_spec(tmp_path, extra + "\n")
    res = runner.invoke(app, ["validate", str(p)])
    assert res.exit_code == 2, res.output
    assert "Traceback" not in res.output
    for w in words:
        assert w in res.output, res.output


def test_missing_skip_with_a_losses_function_is_refused(tmp_path: Path) -> None:
    spec = {**SYNTHETIC, "losses": "mypkg:losses", "missing": "skip"}
    spec.pop("tasks")
    res = runner.invoke(app, ["validate", str(write_spec(tmp_path, spec))])
    assert res.exit_code == 2 and "'missing'" in res.output and "None" in res.output


def test_cli_accumulate_flag_goes_through_the_same_check(tmp_path: Path) -> None:
    p = write_spec(tmp_path, SYNTHETIC)
    res = runner.invoke(app, ["profile", str(p), "--accumulate", "0", "--out", str(tmp_path)])
    assert res.exit_code == 2 and "'accumulate'" in res.output and ">= 1" in res.output
