"""The report of a run directory: terminal tables, ``report.html``, ``report.md``, plots.

``write_report(run_dir)`` reads ``summary.json``, ``steps.csv`` and ``pairs.csv`` and writes
the report files; :mod:`mtldiag.report.tables` builds the tables the terminal shows. The
plotting stack (matplotlib) is imported only when a report is written.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mtldiag.report.write import ReportPaths


def write_report(run_dir: str | Path) -> ReportPaths:
    """Write ``report.html``, ``report.md`` and ``plots/*.png`` into ``run_dir``."""
    from mtldiag.report.write import write_report as _write

    return _write(run_dir)


__all__ = ["write_report"]
