"""What the seeds allow the verdict to say: its kind, the winner's weak tasks, the caution.

``verdict_kind`` reads the paired difference between the first two rows
(:func:`mtldiag.analysis.paired.paired_difference` of their per-seed Δm%):

==================  ===========================================================================
``single_method``   fewer than two ranked rows: nothing to compare
``too_few_seeds``   fewer than ``MIN_SEEDS`` paired seeds: a 95 % interval on 2 seeds is 12.7
                    standard errors wide, so it says little either way
``significant``     the 95 % interval of first − second excludes 0
``within_noise``    it includes 0: the seeds do not separate the two
==================  ===========================================================================
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from mtldiag.analysis.numbers import interval, is_number, sig
from mtldiag.analysis.stats import excludes, seeds_needed
from mtldiag.rundir.schema import PairedDifference, TaskDiff, VerdictKind

MIN_SEEDS = 3  # paired seeds below which the verdict says "too few seeds"
DOMINANT_SHARE = 0.9  # a task with this share of all relative changes drives the Δm% ranking
SATURATION = 0.98  # a higher-is-better score in [0.98, 1]: at its ceiling, can barely rise
LARGE_CHANGE = 50.0  # percent: a task's mean relative change this large swamps the others


def verdict_kind(ranked_rows: int, first_vs_second: PairedDifference | None) -> VerdictKind:
    """The kind of verdict the evidence allows (see the module's table)."""
    if ranked_rows < 2:
        return "single_method"
    if first_vs_second is None or first_vs_second["seeds"] < MIN_SEEDS:
        return "too_few_seeds"
    ci = first_vs_second["diff_ci95"]
    return "significant" if ci is not None and excludes((ci[0], ci[1])) else "within_noise"


def seeds_hint(first_vs_second: PairedDifference | None) -> str:
    """How many seeds to run: what the observed spread would need, at least ``MIN_SEEDS``."""
    if first_vs_second is None or first_vs_second["diff_std"] is None:
        return f"run at least {MIN_SEEDS} seeds (--seeds {_seed_list(MIN_SEEDS)})"
    n = seeds_needed(first_vs_second["diff_mean"] or 0.0, first_vs_second["diff_std"])
    if n is None:
        return (
            "the difference is so small for its spread that no practical number of seeds "
            "would separate them"
        )
    n = max(n, MIN_SEEDS)
    return f"the observed spread would need about {n} seeds (--seeds {_seed_list(n)})"


def _seed_list(n: int) -> str:
    return ",".join(map(str, range(n))) if n <= 5 else f"0,1,...,{n - 1}"


def noise_sentence(
    kind: VerdictKind, first: str, second: str, first_vs_second: PairedDifference | None
) -> str:
    """The sentence on whether ``first`` really beats ``second`` (empty for ``single_method``)."""
    if kind == "single_method" or first_vs_second is None:
        return "" if kind == "single_method" else _too_few(first, second, None)
    d, n = first_vs_second["diff_mean"], first_vs_second["seeds"]
    ci = interval(first_vs_second["diff_ci95"])
    if kind == "significant":
        return (
            f"{first} beats {second} beyond seed noise: paired by seed, its Δm% is "
            f"{sig(abs(d or 0))} points lower (95% interval of the difference {ci}, {n} seeds)."
        )
    if kind == "within_noise":
        return (
            f"{first} and {second} are within seed noise: the paired difference in Δm% is "
            f"{sig(d, sign=True)} with a 95% interval of {ci} over {n} seeds, which includes 0."
        )
    return _too_few(first, second, first_vs_second)


def _too_few(first: str, second: str, fvs: PairedDifference | None) -> str:
    n = fvs["seeds"] if fvs is not None else 0
    seen = f"{n} paired seed" + ("" if n == 1 else "s")
    return f"Whether {first} beats {second} cannot be judged from {seen}: {seeds_hint(fvs)}."


def worse_sentence(label: str, worse_on: Sequence[str], per_task: Mapping[str, TaskDiff]) -> str:
    """The winner's tasks that are worse than the reference beyond noise (empty if none)."""
    if not worse_on:
        return ""
    parts = [
        f"'{t}' ({sig(per_task[t]['diff_mean'], sign=True)}%, 95% interval "
        f"{interval(per_task[t]['diff_ci95'])})"
        for t in worse_on
    ]
    return f"But {label} is worse than the reference beyond noise on {', '.join(parts)}."


@dataclass(frozen=True)
class Caution:
    """Why Δm% mostly reflects one task: its ``cause`` and the tasks behind it."""

    task: str  # the task whose relative changes make up ``share`` of all of them
    share: float
    cause: Literal["saturated", "large_changes", "others_flat"]
    saturated: tuple[str, ...] = ()  # the tasks at their ceiling (cause "saturated")
    reference: float | None = None  # the dominant task's reference value
    mean_change: float | None = None  # its mean |relative change| over the rows, percent


def caution(
    per_task_by_row: Sequence[Mapping[str, TaskDiff]],
    reference: Mapping[str, Any],
    higher_is_better: Mapping[str, bool],
) -> Caution | None:
    """The task that drives Δm% (``DOMINANT_SHARE`` of the rows' |relative changes|), and why.

    Δm% averages relative changes, so one task swamps the others either because theirs are
    tiny (``saturated``: a score near its ceiling of 1, accuracy 0.999 can rise by 0.1% at
    most), or because its own are large (``large_changes``, mean ≥ 50 %: a reference value
    near 0, a loss driven to ~0, inflates them; so does a large real effect), or because the
    others barely moved (``others_flat``). The saturated cause is checked first: it is the one
    a note blaming "a small reference" used to hide.
    """
    if len(higher_is_better) < 2:
        return None
    size = dict.fromkeys(higher_is_better, 0.0)
    for per_task in per_task_by_row:
        for t in higher_is_better:
            d = (per_task.get(t) or {}).get("diff_mean")
            if is_number(d):
                size[t] += abs(d)
    total = sum(size.values())
    if total <= 0:
        return None
    task = max(size, key=lambda t: size[t])
    share = size[task] / total
    if share < DOMINANT_SHARE:
        return None
    rows = max(1, len(per_task_by_row))
    ref = reference.get(task) if is_number(reference.get(task)) else None
    mean_change = size[task] / rows
    saturated = tuple(
        t
        for t, hib in higher_is_better.items()
        if t != task and hib and is_number(reference.get(t)) and SATURATION <= reference[t] <= 1
    )
    if saturated:
        cause: Literal["saturated", "large_changes", "others_flat"] = "saturated"
    elif mean_change >= LARGE_CHANGE:
        cause = "large_changes"
    else:
        cause = "others_flat"
    return Caution(task, share, cause, saturated, ref, mean_change)


def caution_sentence(c: Caution) -> str:
    """The caution note naming its cause."""
    head = f"Caution: task '{c.task}' makes up {c.share:.0%} of the relative changes behind Δm%"
    if c.cause == "saturated":
        names = ", ".join(f"'{t}'" for t in c.saturated)
        why = (
            f"because {names} {'is' if len(c.saturated) == 1 else 'are'} saturated (a score "
            "near its ceiling of 1, whose relative changes are tiny)"
        )
    elif c.cause == "large_changes":
        why = (
            f"because its relative changes are large (mean {sig(c.mean_change)}% of its "
            f"reference value {sig(c.reference)}; a reference near 0 inflates them)"
        )
    else:
        why = "because the other tasks barely moved"
    return f"{head} {why}: the ranking mostly reflects '{c.task}'; read the per-task columns too."
