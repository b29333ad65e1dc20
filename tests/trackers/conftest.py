"""Tracker tests: real packages, tiny runs on the synthetic spec (3 tasks, 1 shared layer)."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from ..conftest import SYNTHETIC, write_spec

TASKS = ("a", "b", "c")
PAIRS = ("a-vs-b", "a-vs-c", "b-vs-c")


@pytest.fixture
def spec_path(tmp_path: Path) -> Path:
    return write_spec(tmp_path, {**SYNTHETIC, "profile": {"steps": 6, "every": 2}})


def training_rows(run_dir: Path) -> list[list[str]]:
    """steps.csv without the wall-clock columns: what training computed."""
    with open(run_dir / "steps.csv", newline="") as f:
        rows = list(csv.reader(f))
    drop = {rows[0].index("time_ms"), rows[0].index("peak_memory_mb")}
    return [[v for k, v in enumerate(r) if k not in drop] for r in rows]
