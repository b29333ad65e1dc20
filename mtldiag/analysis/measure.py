"""The value of one metric path in one summary: what a check rule's bounds are applied to.

Values are means over the seeds of the selected method's ``ok`` runs; a pair metric without
``[a,b]`` is the worst pair's. Bad input (an unknown method, task or layer) raises
:class:`~mtldiag.analysis.rules.CheckError`.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from typing import Any

from mtldiag.analysis.rules import (
    COMPARE_METRICS,
    PAIR_METRICS,
    RUN_SCALARS,
    CheckError,
    MetricPath,
)
from mtldiag.errors import did_you_mean
from mtldiag.rundir.schema import is_baseline


def method_labels(summary: dict[str, Any]) -> list[str]:
    """Run labels in order of first appearance."""
    seen: dict[str, None] = {}
    for run in summary.get("runs") or []:
        seen.setdefault(str(run.get("method")), None)
    return list(seen)


def default_method(summary: dict[str, Any], role: str = "run") -> str:
    """The only method, or the first that is not a single-task or sweep baseline."""
    labels = method_labels(summary)
    if not labels:
        raise CheckError(f"the {role} summary has no runs.")
    methods = [x for x in labels if not is_baseline(x)]
    return (methods or labels)[0]


def _mean(values: Sequence[float | None]) -> float | None:
    vals = [float(v) for v in values if v is not None]
    vals = [v for v in vals if math.isfinite(v)]
    return statistics.fmean(vals) if vals else None


def measure(
    summary: dict[str, Any], metric: MetricPath, method: str | None, role: str
) -> tuple[str, float | None, str]:
    """(method, value, detail) of one metric path in one summary; raises on bad input."""
    labels = method_labels(summary)
    if method is None:
        method = default_method(summary, role)
    elif method not in labels:
        raise CheckError(
            f"method '{method}' is not in the {role}.{did_you_mean(method, labels)}",
            hint="its run labels: " + (", ".join(labels) or "none"),
        )
    tasks = [str(t) for t in summary.get("tasks") or []]

    def need_task(t: str) -> None:
        if t not in tasks:
            raise CheckError(
                f"{metric}: task '{t}' is not in the {role}.{did_you_mean(t, tasks)}",
                hint="its tasks: " + ", ".join(tasks),
            )

    if metric.name in COMPARE_METRICS:
        return method, _compare_value(summary, metric, method, role, need_task), ""
    runs = [r for r in summary.get("runs") or [] if r.get("method") == method]
    ok = [r for r in runs if r.get("status") == "ok"]
    detail = "" if ok else f"no successful run of {method}"
    if metric.name in RUN_SCALARS:
        return method, _mean([r.get(RUN_SCALARS[metric.name]) for r in ok]), detail
    if metric.name == "final_loss":
        need_task(metric.task or "")
        return method, _mean([(r.get("final_loss") or {}).get(metric.task) for r in ok]), detail
    return (method, *_pair_value(summary, metric, ok, tasks, role, need_task, detail))


def _pair_value(
    summary: dict[str, Any],
    metric: MetricPath,
    ok: list[dict[str, Any]],
    tasks: list[str],
    role: str,
    need_task: Any,
    detail: str,
) -> tuple[float | None, str]:
    layers = [str(x) for x in summary.get("layers") or []]
    if metric.layer is not None and metric.layer not in layers:
        raise CheckError(
            f"{metric}: layer '{metric.layer}' is not a shared layer of the "
            f"{role}.{did_you_mean(metric.layer, layers)}",
            hint="its shared layers: " + (", ".join(layers) or "none"),
        )
    if len(tasks) < 2:
        raise CheckError(f"{metric}: the {role} has fewer than two tasks, so no task pairs.")
    if metric.pair is not None:
        for t in metric.pair:
            need_task(t)
        wanted = [metric.pair]
    else:
        wanted = [(a, b) for i, a in enumerate(tasks) for b in tasks[i + 1 :]]

    def value_of(run: dict[str, Any], a: str, b: str) -> float | None:
        for p in run.get("pairs") or []:
            if {p.get("a"), p.get("b")} == {a, b}:
                entry = p if metric.layer is None else (p.get("layers") or {}).get(metric.layer)
                return (entry or {}).get(metric.name)
        return None

    if metric.layer is not None and ok and not detail:
        # A mixed-space comparison: a parameter run has no "representation" layer and a
        # representation run has only that one; say so rather than "no value".
        own = {name for r in ok for p in r.get("pairs") or [] for name in p.get("layers") or {}}
        if metric.layer not in own:
            detail = f"its runs have no layer '{metric.layer}' (theirs: {', '.join(sorted(own))})"
    means = {pair: _mean([value_of(r, *pair) for r in ok]) for pair in wanted}
    if metric.pair is not None:
        return means[metric.pair], detail
    known = {pair: v for pair, v in means.items() if v is not None}
    if not known:
        return None, detail or "no pair has a value"
    worst = PAIR_METRICS[metric.name](known, key=lambda pair: known[pair])
    return known[worst], f"worst pair {worst[0]},{worst[1]}"


def _compare_value(
    summary: dict[str, Any], metric: MetricPath, method: str, role: str, need_task: Any
) -> float | None:
    comparison = summary.get("comparison")
    if not isinstance(comparison, dict):
        raise CheckError(
            f"{metric}: the {role} is not a compare run (its summary.json has no "
            "'comparison' section).",
            hint="metric[task] and delta_m need `mtldiag compare`",
        )
    rows = {r.get("label"): r for r in comparison.get("rows") or []}
    if method not in rows:
        return None  # every run of the method failed: the rule fails, with "n/a"
    row = rows[method]
    if metric.name == "delta_m":
        if comparison.get("reference") is None:
            raise CheckError(
                f"delta_m: the {role} has no reference for Δm%.",
                hint="compare with --single-task, or include ew in the methods",
            )
        return row.get("delta_m")
    need_task(metric.task or "")
    return ((row.get("metric") or {}).get(metric.task) or {}).get("mean")
