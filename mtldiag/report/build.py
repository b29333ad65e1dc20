"""``build_report``: the library call behind ``mtldiag report RUN_DIR``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mtldiag.errors import MtldiagError, RecordsError
from mtldiag.report.write import ReportPaths, write_report
from mtldiag.rundir.load import HINT, load_run
from mtldiag.rundir.rebuild import rebuild_summary
from mtldiag.rundir.writer import RunWriter


@dataclass(frozen=True)
class BuiltReport:
    """What ``mtldiag report`` did: the summary it used (rebuilt or read) and the files."""

    summary: dict[str, Any]
    summary_path: Path
    rebuilt: bool
    paths: ReportPaths | None  # None: the folder could not be written (see ``not_written``)
    not_written: str | None = None


def build_report(run_dir: str | Path, rebuild: bool = False) -> BuiltReport:
    """Write the report of ``run_dir``; rebuild ``summary.json`` first when it is missing or
    unreadable (a crash, a kill) or when ``rebuild`` is set.

    Raises :class:`MtldiagError` when the folder is missing or has nothing to report.
    """
    data = load_run(run_dir)
    if data.summary_problem and not rebuild:
        raise MtldiagError(
            f"summary '{data.path / 'summary.json'}' is damaged: {data.summary_problem}",
            hint=f"`mtldiag report {data.path} --rebuild` rebuilds it from the CSVs",
        )
    rebuilt = False
    if data.summary is None or rebuild:
        if data.steps is None or data.steps.empty:
            raise MtldiagError(
                f"cannot rebuild summary.json in '{data.path}': steps.csv has no rows.",
                hint=HINT,
            )
        why = "summary.json was missing or unreadable" if data.summary is None else "--rebuild"
        data.summary = rebuild_summary(data, why)
        rebuilt = True
    # A run directory on a read-only mount, or owned by someone else, still has a summary to
    # show: the caller prints it and says why nothing was written.
    try:
        if rebuilt:
            RunWriter(data.path, data.tasks).write_summary(data.summary)
        paths = write_report(data)
    except (OSError, RecordsError) as exc:
        cause = exc.__cause__ if isinstance(exc, RecordsError) else exc
        reason = getattr(cause, "strerror", None) or str(cause)
        return BuiltReport(data.summary, data.path / "summary.json", rebuilt, None, reason)
    return BuiltReport(data.summary, data.path / "summary.json", rebuilt, paths)
