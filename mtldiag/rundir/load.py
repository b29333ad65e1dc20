"""The only reader of a run directory (``docs/run-format.md``): the report, the rebuild and
``mtldiag check`` all read through it.

:func:`read_summary` reads ``summary.json`` strictly (a :class:`SummaryError` says what is
wrong); :func:`load_run` reads every file that is there, leniently, for the report. The CSVs
are read as text and only the known numeric columns are converted: a task or method named
``NA`` or ``nan`` stays a name, and a last line cut in half by a crash is dropped.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from mtldiag.errors import MtldiagError
from mtldiag.rundir import shape
from mtldiag.rundir.schema import Summary

STEPS_INT = ("seed", "step", "instrumented")
STEPS_FLOAT = ("time_ms", "peak_memory_mb", "lr")
STEPS_PREFIXES = ("loss/", "grad_norm/", "weight/")
PAIRS_STR = ("method", "a", "b", "layer")
PAIRS_FLOAT = ("dot", "cosine", "gms")

HINT = "pass the folder that `mtldiag profile` or `mtldiag compare` printed (runs/<name>/<time>)"


@dataclass
class RunData:
    """One run directory in memory: ``summary`` may be ``None`` when it was never written."""

    path: Path
    summary: dict[str, Any] | None
    steps: pd.DataFrame | None
    pairs: pd.DataFrame | None
    spec: dict[str, Any] | None
    env: dict[str, Any] | None
    # summary.json parsed but not a summary ("'runs': must be a list"): ``summary`` is None.
    summary_problem: str | None = None

    @property
    def tasks(self) -> list[str]:
        """Tasks in spec order: from the summary, else from the steps.csv header."""
        if self.summary and self.summary.get("tasks"):
            return list(self.summary["tasks"])
        if self.steps is not None:
            return [c[len("loss/") :] for c in self.steps.columns if c.startswith("loss/")]
        return []


def _read_text(path: Path) -> str | None:
    if not path.is_file():
        return None
    text = path.read_text(encoding="utf-8", errors="replace")
    # Rows are flushed whole; a crash mid-write can still leave half a line: drop it.
    if text and not text.endswith("\n"):
        text = text[: text.rfind("\n") + 1]
    return text


def _frame(text: str | None, numeric: list[str], ints: list[str]) -> pd.DataFrame | None:
    if text is None or not text.strip():
        return None
    try:
        df = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False, on_bad_lines="skip")
    except (ValueError, pd.errors.ParserError):  # not CSV at all
        return None
    if not {"method", *ints} <= set(df.columns):
        return None  # not one of our files (its header lacks the key columns): nothing read
    for col in numeric:
        if col in df.columns:
            df[col] = pd.to_numeric(df[col], errors="coerce")
    for col in ints:
        if col in df.columns:
            df[col] = pd.to_numeric(df[col], errors="coerce")
    if ints:
        df = df.dropna(subset=[c for c in ints if c in df.columns])
        for col in ints:
            if col in df.columns:
                df[col] = df[col].astype("int64")
    return df.reset_index(drop=True)


def read_steps(path: Path) -> pd.DataFrame | None:
    """``steps.csv`` with numbers as floats (empty cells NaN), ``method`` as text."""
    text = _read_text(path)
    if text is None or not text.strip():
        return None
    header = text.split("\n", 1)[0].split(",")
    numeric = [c for c in header if c in STEPS_FLOAT or c.startswith(STEPS_PREFIXES)]
    return _frame(text, numeric, list(STEPS_INT))


def read_pairs(path: Path) -> pd.DataFrame | None:
    """``pairs.csv`` with ``dot``/``cosine``/``gms`` as floats."""
    return _frame(_read_text(path), list(PAIRS_FLOAT), ["seed", "step"])


def _json(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


class SummaryError(MtldiagError):
    """``summary.json`` cannot be read: ``reason`` is ``missing`` (no such path), ``no_file``
    (a directory without one), ``invalid_json`` or ``not_a_summary``; ``file`` is the file."""

    def __init__(self, reason: str, file: Path, detail: str = "") -> None:
        super().__init__(f"cannot read summary '{file}': {reason} {detail}".strip())
        self.reason = reason
        self.file = file
        self.detail = detail


def read_summary(path: str | Path) -> Summary:
    """``summary.json`` of a run directory (or the file itself), checked to be a summary."""
    path = Path(path)
    if not path.exists():
        raise SummaryError("missing", path)
    file = path / "summary.json" if path.is_dir() else path
    if not file.is_file():
        raise SummaryError("no_file", file)
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise SummaryError("invalid_json", file, str(exc)) from None
    if not isinstance(data, dict) or not str(data.get("schema", "")).startswith("mtldiag.summary/"):
        raise SummaryError("not_a_summary", file)
    wrong = _shape(data)
    if wrong:
        raise SummaryError("wrong_types", file, wrong)
    return data  # type: ignore[return-value]


def _shape(data: dict[str, Any]) -> str | None:
    """What is wrong with a parsed summary: no schema marker, a missing section every reader
    needs, or a value of the wrong type (:func:`mtldiag.rundir.shape.problem`)."""
    if not str(data.get("schema", "")).startswith("mtldiag.summary/"):
        return "no 'schema: mtldiag.summary/...' (not an mtldiag summary)."
    for key in ("kind", "tasks", "runs"):
        if key not in data:
            return f"'{key}': is missing."
    return shape.problem(data, Summary)


def _yaml(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return None
    return data if isinstance(data, dict) else None


def load_run(run_dir: str | Path) -> RunData:
    """Read every file of a run directory that is there and readable.

    Raises :class:`MtldiagError` when the folder does not exist or holds neither a
    ``summary.json`` nor a ``steps.csv`` with rows.
    """
    path = Path(run_dir)
    if path.is_file():
        # A file inside a run directory (its summary.json, report.md) is a near miss.
        inside = path.parent if (path.parent / "steps.csv").is_file() else None
        raise MtldiagError(
            f"'{path}' is a file, not a run directory.",
            hint=f"pass its folder: {inside}" if inside else HINT,
        )
    if not path.is_dir():
        raise MtldiagError(f"run directory '{path}' does not exist.", hint=HINT)
    summary = _json(path / "summary.json")
    wrong = None
    if summary is not None and (wrong := _shape(summary)):
        summary = None
    data = RunData(
        path=path,
        summary=summary,
        steps=read_steps(path / "steps.csv"),
        pairs=read_pairs(path / "pairs.csv"),
        spec=_yaml(path / "spec.yaml"),
        env=_json(path / "env.json"),
        summary_problem=wrong,
    )
    if data.summary is None and not wrong and (data.steps is None or data.steps.empty):
        raise MtldiagError(
            f"'{path}' is not a usable mtldiag run directory: no summary.json and no "
            "recorded steps in steps.csv.",
            hint=HINT,
        )
    return data
