"""Run directories for the report tests: one real short profile, shared by the module."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

SAMPLE = Path(__file__).parents[2] / "sample_configs" / "synthetic.yaml"


@pytest.fixture(scope="session")
def profile_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 20-step profile of the sample spec (its own run directory, report included)."""
    from mtldiag.runs.profile import run_profile

    out = tmp_path_factory.mktemp("profile") / "run"
    run_profile(SAMPLE, out=out, steps=20, device="cpu")
    return out


@pytest.fixture
def profile_copy(profile_run: Path, tmp_path: Path) -> Path:
    """A private copy of :func:`profile_run` that a test may damage."""
    dst = tmp_path / "run"
    shutil.copytree(profile_run, dst)
    return dst
