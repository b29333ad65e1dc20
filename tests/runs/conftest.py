"""One small comparison, run once in this process: the reference every executor must match."""

from __future__ import annotations

from pathlib import Path

import pytest

from mtldiag.runs.compare import run_compare
from mtldiag.spec import load_spec

from ..conftest import SYNTHETIC, write_spec

# Timing and memory are the machine's, not the run's: everything else must agree exactly.
MACHINE = {"step_time_ms_median", "peak_memory_mb", "time_ms"}
GRID = {"methods": "ew,pcgrad,mgda", "seeds": [0], "steps": 6, "every": 2}


@pytest.fixture(scope="session")
def spec_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_spec(tmp_path_factory.mktemp("spec"), SYNTHETIC)


@pytest.fixture(scope="session")
def serial(spec_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The comparison with ``--jobs 1`` (in this process)."""
    out = tmp_path_factory.mktemp("serial") / "run"
    run_compare(load_spec(spec_path), out=out, jobs=1, **GRID)
    return out
