"""Choosing trackers, and the rule that logging never stops or changes training."""

from __future__ import annotations

import random
import warnings
from pathlib import Path

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from typer.testing import CliRunner

from mtldiag import run_profile
from mtldiag.cli import app
from mtldiag.errors import MtldiagError
from mtldiag.spec import load_spec
from mtldiag.trackers import SINKS, Sink, TrackerWarning, parse_sink_names

from ..conftest import SYNTHETIC, write_spec
from .conftest import training_rows

NOISY = """
import torch
import torch.nn.functional as F

def compute_losses(model, batch):
    x, y = batch
    out = model(x)
    # Draws from the global generator, as dropout or augmentation would.
    return {t: F.mse_loss(out[t], y[t]) * (1 + 0.1 * torch.rand(())) for t in "abc"}
"""


class BrokenSink(Sink):
    """Draws from every global generator, then raises at the fourth step."""

    name = "broken"
    package = "torch"
    extra = "broken"

    def __init__(self, setup) -> None:
        self.calls = 0

    def log_step(self, scalars, step) -> None:
        random.random()
        torch.rand(3)
        if step == 3:
            raise RuntimeError("tracker server went away")


def _noisy_spec(tmp_path: Path) -> Path:
    (tmp_path / "noisy.py").write_text(NOISY)
    spec = {k: v for k, v in SYNTHETIC.items() if k != "tasks"}
    return write_spec(tmp_path, {**spec, "losses": "noisy.py:compute_losses"})


def test_a_failing_tracker_is_switched_off_once_and_training_is_unchanged(tmp_path, monkeypatch):
    monkeypatch.setitem(SINKS, "broken", BrokenSink)
    spec = _noisy_spec(tmp_path)
    run_profile(spec, out=tmp_path / "plain")
    with pytest.warns(TrackerWarning, match="broken tracker failed") as caught:
        run_profile(spec, out=tmp_path / "logged", log="broken,tensorboard")
    assert len([w for w in caught if issubclass(w.category, TrackerWarning)]) == 1
    assert training_rows(tmp_path / "logged") == training_rows(tmp_path / "plain")
    # The other tracker went on to the end.
    acc = EventAccumulator(str(tmp_path / "logged" / "tensorboard" / "ew-seed0"))
    acc.Reload()
    assert len(acc.Scalars("loss/a")) == 6


def test_unknown_tracker_suggests_the_name():
    with pytest.raises(MtldiagError, match="Did you mean 'mlflow'"):
        parse_sink_names("tensorboard,mlfow")
    assert parse_sink_names(" MLflow , wandb,mlflow") == ("mlflow", "wandb")


def test_missing_package_is_exit_2_with_the_install_line(tmp_path, monkeypatch):
    class Absent(BrokenSink):
        name, package, extra = "absent", "mtldiag_no_such_package", "absent"

    monkeypatch.setitem(SINKS, "absent", Absent)
    spec = write_spec(tmp_path, SYNTHETIC)
    res = CliRunner().invoke(app, ["profile", str(spec), "--log", "absent", "--out", "o"])
    assert res.exit_code == 2
    assert "pip install 'mtldiag[absent]'" in res.output
    assert not (tmp_path / "o").exists() and not Path("o").exists()  # before any training


def test_spec_log_key(tmp_path):
    spec = load_spec(write_spec(tmp_path, {**SYNTHETIC, "log": ["tensorboard"]}))
    assert spec.log == ("tensorboard",)
    with pytest.raises(MtldiagError, match="'log'.*unknown tracker 'tensorbord'"):
        load_spec(write_spec(tmp_path, {**SYNTHETIC, "log": "tensorbord"}))


def test_spec_log_is_used_when_no_option_is_given(tmp_path):
    spec = write_spec(tmp_path, {**SYNTHETIC, "log": ["tensorboard"]})
    with warnings.catch_warnings():
        warnings.simplefilter("error", TrackerWarning)
        run_profile(spec, out=tmp_path / "r")
    assert (tmp_path / "r" / "tensorboard" / "ew-seed0").is_dir()
