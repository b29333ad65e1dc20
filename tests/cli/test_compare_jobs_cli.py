"""``mtldiag compare --jobs/--resume/--executor``: bad execution options exit 2 with one line,
before anything is trained or written."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from mtldiag.cli import app

runner = CliRunner()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--jobs", "0"], "--jobs must be at least 1, not 0."),
        (["--jobs", "2", "--device", "cuda:0"], "the device is pinned to 'cuda:0'"),
        (["--executor", "slurm"], "--executor 'slurm' is not an executor."),
        (["--executor", "ray", "--ray-address", "127.0.0.1:9"], "cannot reach the Ray cluster"),
    ],
)
def test_bad_execution_options_exit_2_one_line(
    synthetic_spec: Path, tmp_path: Path, args: list[str], message: str
):
    out = tmp_path / "run"
    res = runner.invoke(
        app, ["compare", str(synthetic_spec), "--methods", "ew", "--out", str(out), *args]
    )
    assert res.exit_code == 2, res.output
    lines = [x for x in res.output.splitlines() if x.strip()]
    assert message in " ".join(res.output.split()) and "Traceback" not in res.output
    assert lines[0].startswith("error:") and len(lines) <= 2  # the error, and maybe a hint
    assert not out.exists()


def test_resume_on_a_folder_that_is_not_a_compare_run_exit_2(tmp_path: Path, profile_run: Path):
    for folder in (tmp_path, profile_run):
        res = runner.invoke(app, ["compare", "--resume", str(folder)])
        assert res.exit_code == 2, res.output
        assert "is not a compare run" in " ".join(res.output.split())
