"""Paired comparisons by seed: each run against the same seed's reference.

Seed noise is shared by the runs of one seed (the same initialisation and data order), so a
difference taken seed by seed cancels it, and its spread over seeds is the noise that is
left. Δm% against the reference's *mean over seeds* mixes the noise of both instead: in one
compare a method read ``-5.76 ± 0.003`` while it was −10.18 and −0.64 against the same
seed's ``ew`` run.

Relative differences are in percent and signed so that **positive is worse** (the sign of
Δm%, Maninis et al. 2019): ``100 · (−1)^hib · (M − R) / |R|``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any, TypedDict

from mtldiag.analysis.stats import Interval, mean_ci95, mean_std
from mtldiag.rundir.schema import PairedDifference, TaskDiff

Values = Mapping[str, "float | None"]  # task -> metric value


class PairedRow(TypedDict):
    """The paired additions to one comparison row (see docs/run-format.md)."""

    delta_m_per_seed: dict[str, float]
    delta_m: float | None
    delta_m_std: float | None
    delta_m_ci95: list[float] | None
    per_task: dict[str, TaskDiff]
    worse_on: list[str]


def _finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def relative_change(value: Any, reference: Any, higher_is_better: bool) -> float | None:
    """100 · (−1)^hib · (value − reference) / |reference|: percent, positive is worse.

    ``None`` when either is missing or not finite, or the reference is 0 (undefined).
    """
    if not (_finite(value) and _finite(reference)) or reference == 0:
        return None
    sign = -1.0 if higher_is_better else 1.0
    return 100.0 * sign * (value - reference) / abs(reference)


def seed_changes(
    metrics: Values, reference: Values, higher_is_better: Mapping[str, bool]
) -> dict[str, float] | None:
    """Every task's relative change of one seed's run against that seed's reference.

    ``None`` unless every task of ``higher_is_better`` has one: a seed is paired whole or not
    at all, so Δm% and the per-task differences rest on the same seeds.
    """
    out = {}
    for t, hib in higher_is_better.items():
        c = relative_change(metrics.get(t), reference.get(t), hib)
        if c is None:
            return None
        out[t] = c
    return out or None


def _interval(ci: Interval | None) -> list[float] | None:
    return [ci[0], ci[1]] if ci is not None else None


def _key(seed: Any) -> str:
    return str(seed)


def paired_row(
    metrics_by_seed: Mapping[Any, Values],
    reference_by_seed: Mapping[Any, Values],
    higher_is_better: Mapping[str, bool],
) -> PairedRow:
    """A row's Δm% and per-task differences, each seed against the same seed's reference.

    ``delta_m`` is the mean over the paired seeds of each seed's Δm%, ``delta_m_std`` their
    sample std and ``delta_m_ci95`` the Student-t 95 % interval of that mean (``None`` with
    one seed). A seed without a reference (or without every task's value) is not paired.
    ``worse_on`` lists the tasks whose interval lies wholly above 0 (worse than the reference).
    """
    refs = {_key(s): r for s, r in reference_by_seed.items()}
    changes: dict[str, dict[str, float]] = {}
    for seed, metrics in sorted(metrics_by_seed.items(), key=lambda kv: _seed_order(kv[0])):
        ref = refs.get(_key(seed))
        c = seed_changes(metrics, ref, higher_is_better) if ref is not None else None
        if c is not None:
            changes[_key(seed)] = c
    per_seed = {s: sum(c.values()) / len(c) for s, c in changes.items()}
    per_task: dict[str, TaskDiff] = {}
    for t in higher_is_better:
        diffs = [c[t] for c in changes.values()]
        per_task[t] = TaskDiff(
            diff_mean=mean_std(diffs)[0] if diffs else None,
            diff_ci95=_interval(mean_ci95(diffs)),
        )
    values = list(per_seed.values())
    mean, std = mean_std(values) if values else (None, None)
    return PairedRow(
        delta_m_per_seed=per_seed,
        delta_m=mean,
        delta_m_std=std,
        delta_m_ci95=_interval(mean_ci95(values)),
        per_task=per_task,
        worse_on=[t for t, d in per_task.items() if _worse(d["diff_ci95"])],
    )


def _worse(ci: list[float] | None) -> bool:
    return ci is not None and ci[0] > 0


def _seed_order(seed: Any) -> tuple[int, Any]:
    s = str(seed)
    return (0, int(s)) if s.lstrip("-").isdigit() else (1, s)


def paired_difference(first: Mapping[Any, float], second: Mapping[Any, float]) -> PairedDifference:
    """``first`` − ``second`` seed by seed (per-seed Δm% of two rows), over the seeds both have."""
    other = {_key(s): v for s, v in second.items()}
    common = sorted((_key(s) for s in first if _key(s) in other), key=_seed_order)
    mine = {_key(s): v for s, v in first.items()}
    diffs = [mine[s] - other[s] for s in common]
    mean, std = mean_std(diffs) if diffs else (None, None)
    return PairedDifference(
        diff_mean=mean, diff_std=std, diff_ci95=_interval(mean_ci95(diffs)), seeds=len(diffs)
    )


def seeds_of(runs: Iterable[Mapping[str, Any]], label: str) -> dict[str, dict[str, Any]]:
    """The metrics of ``label``'s ok runs by seed (``"<seed>"`` keys)."""
    return {
        _key(r.get("seed")): dict(r.get("metrics") or {})
        for r in runs
        if r.get("method") == label and r.get("status") == "ok" and r.get("metrics")
    }
