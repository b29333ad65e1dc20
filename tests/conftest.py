"""Shared fixtures: small specs written to a temporary folder."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

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
