"""``write_report``: a run directory's ``report.html``, ``report.md`` and ``plots/*.png``."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from mtldiag.errors import MtldiagError
from mtldiag.report.content import build_content
from mtldiag.report.html import render_html
from mtldiag.report.markdown import render_markdown
from mtldiag.report.plots import make_plots
from mtldiag.rundir.load import RunData, load_run


@dataclass(frozen=True)
class ReportPaths:
    """The files a report wrote, and any plot that could not be drawn."""

    html: Path
    markdown: Path
    plots: list[Path]
    warnings: list[str] = field(default_factory=list)


def _write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def write_report(run_dir: str | Path | RunData) -> ReportPaths:
    """Write the report of a run directory that has a ``summary.json``.

    The CSV-based plots (curves over training) are skipped when the CSVs are missing; a
    missing ``summary.json`` is an error whose hint is ``mtldiag report`` (which rebuilds it).
    """
    data = run_dir if isinstance(run_dir, RunData) else load_run(run_dir)
    if data.summary is None:
        raise MtldiagError(
            f"'{data.path}' has no readable summary.json.",
            hint=f"`mtldiag report {data.path}` rebuilds it from steps.csv and pairs.csv",
        )
    plots, warnings = make_plots(data, data.path / "plots")
    content = build_content(data.summary, plots, warnings)
    html_path = data.path / "report.html"
    md_path = data.path / "report.md"
    _write(html_path, render_html(content))
    _write(md_path, render_markdown(content))
    return ReportPaths(html_path, md_path, [p.path for p in plots], warnings)
