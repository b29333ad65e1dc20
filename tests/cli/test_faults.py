"""Faults during a run: a kill, a full disk, two processes on one folder, a loader that breaks
mid-run, a read-only run directory. Each ends with one line, the right exit code, and records
that ``mtldiag report`` can read. What needs a process of its own (a kill, two processes, the
exit status seen from outside) runs one; the rest runs here, which is faster."""

from __future__ import annotations

import builtins
import errno
import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

import mtldiag.rundir.writer as writer_module
from mtldiag.cli import app
from mtldiag.rundir.load import read_steps

from ..conftest import SYNTHETIC, write_spec

runner = CliRunner()
ROOT = Path(__file__).parents[2]

# The loader wrapper the flaky factories below share: breaks on its K-th batch.
FLAKY_LOADER = """
from mtldiag.examples.synthetic import build_loader


class Flaky:
    def __init__(self, inner, k):
        self.inner, self.k, self.given = inner, k, 0

    def __iter__(self):
        for batch in self.inner:
            self.given += 1
            if self.given == self.k:
                raise OSError("shard 7 is unreadable")
            yield batch
"""

# Only the first loader this process builds breaks: in a comparison the first run fails and
# the runs after it get a sound loader.
FLAKY = (
    FLAKY_LOADER
    + """
BUILT = []


def flaky(k, **kw):
    BUILT.append(1)
    return Flaky(build_loader(**kw), k) if len(BUILT) == 1 else build_loader(**kw)
"""
)


def _cli(*args: str, cwd: Path, **kw) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "200"}
    return subprocess.Popen(
        [sys.executable, "-m", "mtldiag", *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kw,
    )


def _rows(run: Path) -> int:
    steps = read_steps(run / "steps.csv")
    return 0 if steps is None else len(steps)


def test_sigkill_mid_run_then_report_rebuilds_it_as_cut_short(tmp_path: Path):
    spec = write_spec(tmp_path, {**SYNTHETIC, "profile": {"steps": 1_000_000, "every": 1}})
    run = tmp_path / "run"
    proc = _cli("profile", str(spec), "--out", str(run), cwd=tmp_path)
    deadline = time.monotonic() + 60
    while _rows(run) < 5 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert not (run / "summary.json").exists()
    res = _cli("report", str(run), cwd=tmp_path)
    out, err = res.communicate(timeout=120)
    assert res.returncode == 0, err
    assert "rebuilt" in err and "Traceback" not in out + err
    summary = json.loads((run / "summary.json").read_text())
    # Every row on disk was whole: the rebuilt run holds exactly the rows steps.csv has.
    assert summary["runs"][0]["steps"] == _rows(run) >= 5
    assert summary["runs"][0]["status"] == "interrupted"
    assert (run / "report.md").is_file()


def test_two_processes_on_one_out_one_runs_the_other_is_refused(tmp_path: Path):
    spec = write_spec(tmp_path, {**SYNTHETIC, "profile": {"steps": 60, "every": 1}})
    run = tmp_path / "run"
    procs = [_cli("profile", str(spec), "--out", str(run), cwd=tmp_path) for _ in range(2)]
    results = [(p.wait(timeout=300), *p.communicate()) for p in procs]
    codes = sorted(r[0] for r in results)
    assert codes == [0, 2], results
    refused = next(r for r in results if r[0] == 2)
    text = " ".join(refused[2].split())
    assert "being written by another mtldiag process" in text or "already holds a run" in text
    assert "Traceback" not in refused[2]
    # The folder holds the one run, whole: 60 rows and its summary.
    assert _rows(run) == 60
    assert json.loads((run / "summary.json").read_text())["runs"][0]["steps"] == 60


class _FullDisk:
    """A file whose writes fail with ENOSPC after ``room`` bytes, the last one cut in half."""

    def __init__(self, real, room: list[int]) -> None:
        self.real, self.room = real, room

    def write(self, data) -> int:
        if len(data) > self.room[0]:
            self.real.write(bytes(data[: self.room[0] // 2]))  # a torn row, as a disk does
            self.room[0] = 0
            raise OSError(errno.ENOSPC, "No space left on device")
        self.room[0] -= len(data)
        return self.real.write(data)

    def __getattr__(self, name):
        return getattr(self.real, name)


def test_full_disk_stops_the_run_in_one_line_and_report_reads_the_rows(tmp_path, monkeypatch):
    spec = write_spec(tmp_path, {**SYNTHETIC, "profile": {"steps": 50, "every": 1}})
    run = tmp_path / "run"
    room = [6000]  # the headers and some steps, shared by steps.csv and pairs.csv
    real_open = builtins.open

    def disk_open(path, mode="r", *args, **kwargs):
        f = real_open(path, mode, *args, **kwargs)
        return _FullDisk(f, room) if str(path).endswith(".csv") and "w" in mode else f

    monkeypatch.setattr(writer_module, "open", disk_open, raising=False)
    res = runner.invoke(app, ["profile", str(spec), "--out", str(run)])
    assert res.exit_code == 1, res.output
    assert "No space left on device" in res.output and "Traceback" not in res.output
    assert "training stopped" in res.output and "mtldiag report" in res.output
    monkeypatch.undo()
    written = _rows(run)
    assert 0 < written < 50  # the torn last row is dropped, the whole ones are read
    res = runner.invoke(app, ["report", str(run)])
    assert res.exit_code == 0, res.output
    summary = json.loads((run / "summary.json").read_text())
    assert summary["runs"][0]["steps"] == written and summary["runs"][0]["status"] != "ok"


def test_loader_failing_at_step_k_fails_the_profile_at_that_step(tmp_path: Path):
    (tmp_path / "flaky.py").write_text(FLAKY)
    data = {**SYNTHETIC, "data": {**SYNTHETIC["data"], "factory": "flaky.py:flaky"}}
    data["data"]["kwargs"] = {**data["data"]["kwargs"], "k": 8}  # 4 stats + 1 probe + 3 steps
    spec = write_spec(tmp_path, {**data, "profile": {"steps": 6, "every": 1}})
    run = tmp_path / "run"
    # In this process (the flaky module is loaded per file, so its count starts afresh).
    res = runner.invoke(app, ["profile", str(spec), "--out", str(run)])
    assert res.exit_code == 1, res.output
    text = " ".join(res.output.split())
    assert "at step 2" in text and "shard 7 is unreadable" in text and "flaky.py:" in text
    assert "Traceback" not in res.output
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "failed" and summary["runs"][0]["steps"] == 2 == _rows(run)
    assert "at step 2" in summary["runs"][0]["error"]


def test_loader_failing_in_one_compare_run_fails_that_run_and_the_others_go_on(tmp_path: Path):
    (tmp_path / "flaky.py").write_text(FLAKY)
    data = {**SYNTHETIC, "data": {**SYNTHETIC["data"], "factory": "flaky.py:flaky"}}
    data["data"]["kwargs"] = {**data["data"]["kwargs"], "k": 8}
    spec = write_spec(tmp_path, data)
    run = tmp_path / "run"
    proc = _cli(
        "compare", str(spec), "-m", "ew,pcgrad", "--steps", "5", "--out", str(run), cwd=tmp_path
    )
    out, err = proc.communicate(timeout=180)
    assert proc.returncode == 0, err
    assert "Traceback" not in out + err
    runs = json.loads((run / "summary.json").read_text())["runs"]
    assert [r["status"] for r in runs] == ["failed", "ok"]
    assert "at step 2" in runs[0]["error"] and "flaky.py:" in runs[0]["error"]
    assert runs[1]["steps"] == 5


def test_report_on_a_read_only_run_prints_the_summary_and_says_where_to_write(
    profile_copy: Path, monkeypatch
):
    (profile_copy / "summary.json").unlink()  # so it must rebuild, and cannot save it
    inside = str(profile_copy)
    real_open, real_mkdir = builtins.open, Path.mkdir

    def refuse(path) -> None:
        if str(path).startswith(inside):
            raise PermissionError(errno.EACCES, "Permission denied", str(path))

    def ro_open(path, mode="r", *args, **kwargs):
        if any(m in mode for m in "wax+"):
            refuse(path)
        return real_open(path, mode, *args, **kwargs)

    def ro_mkdir(self, *args, **kwargs):
        refuse(self)
        return real_mkdir(self, *args, **kwargs)

    # Tests run as root in CI's containers, where chmod does not stop a write: refuse it here.
    monkeypatch.setattr(builtins, "open", ro_open)
    monkeypatch.setattr(io, "open", ro_open)  # pathlib's write_text opens through io.open
    monkeypatch.setattr(Path, "mkdir", ro_mkdir)
    res = runner.invoke(app, ["report", inside])
    monkeypatch.undo()
    assert res.exit_code == 0, res.output
    text = " ".join(res.output.split())
    assert "Diagnosis" in text and "Permission denied" in text and "cp -r" in text
    assert not (profile_copy / "summary.json").exists()


def test_task_names_with_markup_reach_terminal_html_and_markdown_as_text(tmp_path: Path):
    names = ["c[/]", "[click](https://evil.example)", "*em* <b>x</b> | p"]
    data = {**SYNTHETIC, "profile": {"steps": 3}}
    data["tasks"] = {
        n: {"output": t, "target": t, "loss": "mse"} for n, t in zip(names, "abc", strict=True)
    }
    spec = write_spec(tmp_path, data)
    run = tmp_path / "run"
    for command in (["validate", str(spec)], ["profile", str(spec), "--out", str(run)]):
        res = runner.invoke(app, command)
        assert res.exit_code == 0, res.output
        assert "c[/]" in res.output and "[click](https://evil.example)" in res.output
    md = (run / "report.md").read_text()
    assert "[click](" not in md and "https://evil" not in md  # no link, no bare-URL link
    assert "\\[click\\]" in md and "\\*em\\*" in md and "\\| p" in md
    html = (run / "report.html").read_text()
    assert 'href="https://evil' not in html and "<b>x</b>" not in html


@pytest.mark.parametrize("seed", [-1, 2**32, 99999999999999999999999])
def test_seed_bounds_are_the_same_in_the_spec_and_on_the_command_line(tmp_path, seed):
    spec = write_spec(tmp_path, {**SYNTHETIC, "seed": seed})
    from_spec = runner.invoke(app, ["validate", str(spec)])
    spec = write_spec(tmp_path, SYNTHETIC)
    from_cli = runner.invoke(app, ["profile", str(spec), "--seed", str(seed)])
    assert from_spec.exit_code == from_cli.exit_code == 2
    words = "must be a whole number from 0 to 4294967295"
    assert words in " ".join(from_spec.output.split()) and "'seed'" in from_spec.output
    assert words in " ".join(from_cli.output.split()) and "'--seed'" in from_cli.output


# An eval function that raises the first time any process calls it (an O_EXCL marker file is
# the one thing worker processes share): exactly one run of a comparison fails its evaluation.
EVAL_ONCE = """import os


def evaluate(model, loader):
    try:
        os.close(os.open("evaluated-once", os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        return {t: 1.0 for t in "abc"}
    raise KeyError("metric 'acc' is not computed")
"""
EVAL_RAISE_LINE = 9


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_eval_raising_in_one_compare_run_fails_that_run_and_the_others_go_on(
    tmp_path: Path, jobs: str
):
    (tmp_path / "my_eval.py").write_text(EVAL_ONCE)
    spec = write_spec(tmp_path, {**SYNTHETIC, "eval": "my_eval.py:evaluate"})
    run = tmp_path / "run"
    args = ["-m", "ew,pcgrad", "--steps", "3", "--jobs", jobs, "--out", str(run)]
    proc = _cli("compare", str(spec), *args, cwd=tmp_path)
    out, err = proc.communicate(timeout=180)
    assert proc.returncode == 0, err
    assert "Traceback" not in out + err
    runs = json.loads((run / "summary.json").read_text())["runs"]
    failed = [r for r in runs if r["status"] == "failed"]
    ok = [r for r in runs if r["status"] == "ok"]
    assert len(failed) == len(ok) == 1, runs  # --jobs 2: either run may evaluate first
    error = failed[0]["error"]
    assert error.startswith(f"{failed[0]['method']} (seed 0) in evaluation after step 3: ")
    assert "eval 'my_eval.py:evaluate' raised KeyError" in error and "'acc'" in error
    assert f"my_eval.py:{EVAL_RAISE_LINE} in evaluate" in error and "\n" not in error
    assert "metrics" not in failed[0] and ok[0]["metrics"] == {t: 1.0 for t in "abc"}
    assert f"{failed[0]['method']} (seed 0): failed" in err  # the progress says so too
    # The failed run's training records are kept: 3 rows per run in steps.csv.
    assert failed[0]["steps"] == ok[0]["steps"] == 3 and _rows(run) == 6


# Breaks on the K-th batch of the loader built under seed 1 (build_loader seeds torch first),
# whichever process builds it: under --jobs every run builds its loader in its own worker.
FLAKY_SEED = (
    FLAKY_LOADER
    + """
import torch


def flaky(k, **kw):
    loader = build_loader(**kw)
    return Flaky(loader, k) if torch.initial_seed() == 1 else loader
"""
)


def test_loader_failing_in_one_worker_fails_that_run_and_the_others_go_on(tmp_path: Path):
    (tmp_path / "flaky.py").write_text(FLAKY_SEED)
    data = {**SYNTHETIC, "data": {**SYNTHETIC["data"], "factory": "flaky.py:flaky"}}
    data["data"]["kwargs"] = {**data["data"]["kwargs"], "k": 3}
    spec = write_spec(tmp_path, data)
    run = tmp_path / "run"
    argv = ["compare", str(spec), "-m", "ew,pcgrad", "--seeds", "0,1", "--steps", "4"]
    proc = _cli(*argv, "--jobs", "2", "--out", str(run), cwd=tmp_path)
    out, err = proc.communicate(timeout=180)
    assert proc.returncode == 0, err
    assert "Traceback" not in out + err
    runs = json.loads((run / "summary.json").read_text())["runs"]
    status = {(r["method"], r["seed"]): r["status"] for r in runs}
    assert status == {
        ("ew", 0): "ok",
        ("pcgrad", 0): "ok",
        ("ew", 1): "failed",
        ("pcgrad", 1): "failed",
    }
    for r in runs:
        if r["seed"] == 1:
            assert "shard 7 is unreadable" in r["error"] and "flaky.py:" in r["error"]
        else:
            assert r["steps"] == 4
