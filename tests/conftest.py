"""Shared fixtures: small specs written to a temporary folder, one real short profile run."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from mtldiag.runs.profile import run_profile

SAMPLE = Path(__file__).parents[1] / "sample_configs" / "synthetic.yaml"

SYNTHETIC = {
    "name": "synth",
    "seed": 0,
    "device": "cpu",
    "model": {
        "factory": "mtldiag.examples.synthetic:build_model",
        "kwargs": {"d_in": 8, "width": 4, "out_dim": 2, "n_tasks": 3},
    },
    "data": {
        "factory": "mtldiag.examples.synthetic:build_loader",
        "kwargs": {
            "batch_size": 16,
            "n_batches": 4,
            "d_in": 8,
            "out_dim": 2,
            "cosine": -0.5,
            "scale": 10.0,
            "noise": 0.0,
        },
    },
    "tasks": {t: {"output": t, "target": t, "loss": "mse"} for t in "abc"},
    "optimizer": {"name": "sgd", "lr": 0.01},
    "profile": {"steps": 6, "every": 1},
}


def write_spec(folder: Path, data: dict, name: str = "spec.yaml") -> Path:
    path = folder / name
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.fixture
def synthetic_spec(tmp_path: Path) -> Path:
    return write_spec(tmp_path, SYNTHETIC)


@pytest.fixture(scope="session")
def profile_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 20-step profile of the sample spec (its own run directory, report included)."""
    out = tmp_path_factory.mktemp("profile") / "run"
    run_profile(SAMPLE, out=out, steps=20, device="cpu")
    return out


@pytest.fixture
def profile_copy(profile_run: Path, tmp_path: Path) -> Path:
    """A private copy of :func:`profile_run` that a test may damage."""
    dst = tmp_path / "run"
    shutil.copytree(profile_run, dst)
    return dst
