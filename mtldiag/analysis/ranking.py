"""The numbers behind ``mtldiag compare``: Δm%, Pareto dominance, the ranked table.

Pure functions of plain data (the ``runs`` entries of ``summary.json``), so ``mtldiag report``
can rebuild the comparison from a run directory, and tests can check them on hand-made runs.

- Δm% is the multi-task performance measure of Maninis, Radosavovic & Kokkinos, "Attentive
  single-tasking of multiple tasks", CVPR 2019: the mean relative per-task change against a
  reference, signed so that lower is better.
- The sweep points (:mod:`mtldiag.analysis.sweep`) are the baseline a balancing method has
  to beat; a row a sweep point Pareto-dominates is marked. The verdict is written by
  :mod:`mtldiag.analysis.verdict`.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from typing import Any

from mtldiag.analysis.evidence import caution, verdict_kind
from mtldiag.analysis.paired import paired_difference, paired_row, seed_changes, seeds_of
from mtldiag.analysis.verdict import verdict
from mtldiag.rundir.schema import PairedDifference, label_kind, single_label

# --------------------------------------------------------------------------- Δm% and dominance


def delta_m(
    metrics: Mapping[str, float | None],
    reference: Mapping[str, float | None],
    higher_is_better: Mapping[str, bool],
) -> float | None:
    """Δm% = 100/T · Σ_t (−1)^hib_t · (M_t − R_t) / |R_t| (Maninis et al. 2019).

    Lower is better; negative means better than the reference on average. The tasks are those
    of ``higher_is_better``. ``None`` when a value is missing or a reference value is 0 (the
    relative change is undefined). ``|R_t|`` keeps the sign right for a negative reference
    (e.g. a log-likelihood); for the usual positive metrics it is the paper's ``R_t``.
    """
    changes = seed_changes(metrics, reference, higher_is_better)
    return sum(changes.values()) / len(changes) if changes else None


def dominates(
    a: Mapping[str, float | None],
    b: Mapping[str, float | None],
    higher_is_better: Mapping[str, bool],
) -> bool:
    """Whether ``a`` Pareto-dominates ``b``: no worse on every task, strictly better on one."""
    strictly = False
    for t, hib in higher_is_better.items():
        x, y = a.get(t), b.get(t)
        if x is None or y is None:
            return False
        better, worse = (x > y, x < y) if hib else (x < y, x > y)
        if worse:
            return False
        strictly = strictly or better
    return strictly


# --------------------------------------------------------------------------- the table


def _mean_std(values: Sequence[float]) -> dict[str, float | None]:
    """Mean and sample standard deviation (n − 1) over seeds; std is 0.0 for a single seed."""
    if not values:
        return {"mean": None, "std": None}
    mean = statistics.fmean(values)
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return {"mean": mean, "std": std}


def _values(xs: Sequence[Any]) -> list[float]:
    return [float(x) for x in xs if x is not None and math.isfinite(float(x))]


def _mean_or_none(xs: Sequence[Any]) -> float | None:
    v = _values(xs)
    return statistics.fmean(v) if v else None


def _group(runs: Sequence[Mapping[str, Any]]) -> dict[str, list[Mapping[str, Any]]]:
    groups: dict[str, list[Mapping[str, Any]]] = {}
    for r in runs:
        groups.setdefault(str(r.get("method")), []).append(r)
    return groups


def _ok(rs: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    return [r for r in rs if r.get("status") == "ok" and r.get("metrics")]


def _pair_mean(rs: Sequence[Mapping[str, Any]], key: str) -> float | None:
    """Mean over seeds and task pairs of a whole-trunk pair statistic."""
    return _mean_or_none([p.get(key) for r in rs for p in r.get("pairs") or []])


def _row(label: str, rs: Sequence[Mapping[str, Any]], tasks: Sequence[str]) -> dict[str, Any]:
    ok = _ok(rs)
    times = _values([r.get("step_time_ms_median") for r in ok])
    mems = _values([r.get("peak_memory_mb") for r in ok])
    return {
        "label": label,
        "kind": "sweep" if label_kind(label) == "sweep" else "method",
        "rank": None,
        "seeds": len(ok),
        "failed": len(rs) - len(ok),
        "metric": {t: _mean_std(_values([r["metrics"].get(t) for r in ok])) for t in tasks},
        "delta_m_per_seed": {},
        "delta_m": None,
        "delta_m_std": None,
        "delta_m_ci95": None,
        "per_task": {},
        "worse_on": [],
        "conflict_rate": _pair_mean(ok, "conflict_rate"),
        "cosine_mean": _pair_mean(ok, "cosine_mean"),
        "step_time_ms": statistics.median(times) if times else None,
        "peak_memory_mb": max(mems) if mems else None,
        "dominated_by": [],
    }


def _means(row: Mapping[str, Any]) -> dict[str, float | None]:
    return {t: v["mean"] for t, v in row["metric"].items()}


def _avg_ranks(values: list[float], higher_is_better: bool) -> list[float]:
    """1-based ranks of ``values`` (best first), ties sharing their average rank."""
    order = sorted(range(len(values)), key=lambda i: -values[i] if higher_is_better else values[i])
    ranks = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def _mean_task_rank(rows: list[dict[str, Any]], hib: Mapping[str, bool]) -> dict[str, float]:
    """Each row's mean over tasks of its rank among ``rows`` on that task's mean metric."""
    sums = dict.fromkeys((r["label"] for r in rows), 0.0)
    for t, h in hib.items():
        ranks = _avg_ranks([r["metric"][t]["mean"] for r in rows], h)
        for r, k in zip(rows, ranks, strict=True):
            sums[r["label"]] += k
    return {label: s / len(hib) for label, s in sums.items()}


def comparison_table(
    runs: Sequence[Mapping[str, Any]],
    higher_is_better: Mapping[str, bool],
    evaluation: str | None,
) -> dict[str, Any]:
    """The ``comparison`` section of a compare ``summary.json`` (see docs/run-format.md).

    ``runs`` are summary run entries (``method`` is the run label, ``metrics`` the per-task
    evaluation of an ok run); ``higher_is_better`` names every task. Rows aggregate the ok runs
    of each method and sweep label over seeds (metrics: mean ± sample std). Δm% is paired by
    seed (:func:`mtldiag.analysis.paired.paired_row`): each seed against the same seed's
    single-task models, or without them its ``ew`` run; rows are ranked best first by its
    mean over seeds, else by mean per-task rank.
    """
    hib = {str(t): bool(v) for t, v in higher_is_better.items()}
    tasks = list(hib)
    groups = _group(runs)

    single: dict[str, dict[str, float | None]] = {}
    for t in tasks:
        vals = _values([r["metrics"].get(t) for r in _ok(groups.get(single_label(t), []))])
        if vals:
            single[t] = _mean_std(vals)

    rows = [_row(label, rs, tasks) for label, rs in groups.items() if label_kind(label) != "single"]
    live = [r for r in rows if r["seeds"] > 0]

    reference: str | None = None
    ref_values: dict[str, float | None] = {}
    if tasks and all(t in single for t in tasks):
        reference, ref_values = "single_task", {t: single[t]["mean"] for t in tasks}
    else:
        ew = next((r for r in live if r["label"] == "ew"), None)
        if ew is not None:
            reference, ref_values = "ew", _means(ew)

    ref_by_seed = _reference_by_seed(runs, reference, tasks)
    for row in live if reference is not None else []:
        row.update(paired_row(seeds_of(runs, row["label"]), ref_by_seed, hib))

    sweeps = [r for r in live if r["kind"] == "sweep"]
    for row in live:
        mine = _means(row)
        row["dominated_by"] = [
            s["label"] for s in sweeps if s is not row and dominates(_means(s), mine, hib)
        ]

    by_delta = reference is not None and all(r["delta_m"] is not None for r in live)
    if by_delta:
        live.sort(key=lambda r: r["delta_m"])
    elif live and tasks and all(r["metric"][t]["mean"] is not None for r in live for t in tasks):
        score = _mean_task_rank(live, hib)
        live.sort(key=lambda r: score[r["label"]])
    for i, row in enumerate(live, start=1):
        row["rank"] = i
    ordered = live + [r for r in rows if r["seeds"] == 0]

    negative = []
    if single:
        for t in tasks:
            means = [r["metric"][t]["mean"] for r in live]
            if (
                t in single
                and means
                and all(m is not None for m in means)
                and all(
                    (m < single[t]["mean"]) if hib[t] else (m > single[t]["mean"]) for m in means
                )
            ):
                negative.append(t)

    failed_runs = [
        {"label": str(r.get("method")), "seed": r.get("seed"), "error": r.get("error") or ""}
        for r in runs
        if r.get("status") not in ("ok", None)
    ]

    out: dict[str, Any] = {
        "evaluation": evaluation,
        "reference": reference,
        "higher_is_better": hib,
        "rows": ordered,
    }
    if single:
        out["single_task"] = single
    out["negative_transfer"] = negative
    out["failed_runs"] = failed_runs
    out["first_vs_second"] = _first_vs_second(runs, live, by_delta, hib)
    out["verdict_kind"] = verdict_kind(len(live), out["first_vs_second"])
    moved = [r for r in live if not (reference == "ew" and r["label"] == "ew")]
    note = caution([r["per_task"] for r in moved], ref_values, hib) if by_delta else None
    out["verdict"] = verdict(out, by_delta, note)
    out["failed_runs"] = out.pop("failed_runs")  # the schema's order: verdict, failed_runs
    return out


def _reference_by_seed(
    runs: Sequence[Mapping[str, Any]], reference: str | None, tasks: Sequence[str]
) -> dict[str, dict[str, Any]]:
    """Each seed's reference metrics: that seed's single-task models (a seed lacking one of
    them has none), or that seed's ``ew`` run."""
    if reference == "ew":
        return seeds_of(runs, "ew")
    if reference != "single_task":
        return {}
    by_task = {t: seeds_of(runs, single_label(t)) for t in tasks}
    seeds = set.intersection(*(set(v) for v in by_task.values())) if by_task else set()
    return {s: {t: by_task[t][s].get(t) for t in tasks} for s in seeds}


def _first_vs_second(
    runs: Sequence[Mapping[str, Any]],
    ranked: Sequence[Mapping[str, Any]],
    by_delta: bool,
    hib: Mapping[str, bool],
) -> PairedDifference | None:
    """Rank 1's per-seed Δm% minus rank 2's, over the seeds both have.

    Without a Δm% ranking (no reference), each seed's Δm% of rank 1 against rank 2's run of
    the same seed stands for that difference.
    """
    if len(ranked) < 2:
        return None
    first, second = ranked[0], ranked[1]
    if by_delta:
        return paired_difference(first["delta_m_per_seed"], second["delta_m_per_seed"])
    direct = paired_row(seeds_of(runs, first["label"]), seeds_of(runs, second["label"]), hib)
    per_seed = direct["delta_m_per_seed"]
    return paired_difference(per_seed, dict.fromkeys(per_seed, 0.0))
