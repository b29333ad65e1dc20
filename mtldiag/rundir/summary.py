"""How ``summary.json`` is concluded: the steps profile, compare and the rebuild share.

A summary starts as :func:`mtldiag.rundir.schema.new_summary`; runs are appended as they end;
one of these functions then sets its status and what is derived from the runs (the diagnosis
of the reference run, the comparison table), so the three writers of a summary cannot drift.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mtldiag.analysis.diagnose import diagnose
from mtldiag.analysis.ranking import comparison_table
from mtldiag.rundir.schema import (
    Preview,
    RunEntry,
    Status,
    Summary,
    gradient_space,
    reference_run,
)


def describe(summary: Summary) -> None:
    """Set the diagnosis: the findings on the reference run's raw task gradients, and on what
    the comparison showed when there is one."""
    ref = reference_run(summary["runs"], summary["tasks"])
    if ref is not None:
        summary["diagnosis"] = diagnose(
            dict(ref),
            summary["layers"],
            summary.get("layer_params"),
            summary.get("comparison"),
            gradient_space(summary),
        )


def conclude_profile(
    summary: Summary, run: RunEntry | None, status: Status, preview: Preview | None = None
) -> None:
    """A profile's end: its one run (``None`` when none got a step), the diagnosis, the preview."""
    summary["status"] = status
    if run is not None:
        summary["runs"] = [run]
        describe(summary)
    if preview is not None:
        summary["preview"] = preview


def conclude_compare(
    summary: Summary,
    status: Status,
    evaluation: str | None,
    higher_is_better: Mapping[str, bool],
) -> None:
    """A comparison's end: the diagnosis, and the ranked table when a run ended ok.

    ``higher_is_better`` names every task; ``evaluation`` is what the runs' ``metrics`` hold.
    """
    summary["status"] = status
    summary["evaluation"] = evaluation
    runs: list[Any] = summary["runs"]
    if any(r.get("status") == "ok" for r in runs):
        summary["comparison"] = comparison_table(runs, higher_is_better, evaluation)
    describe(summary)  # after the comparison: the diagnosis reads what it showed
