"""The typed shape of a run directory's JSON files and the rules every reader of them shares.

The TypedDicts mirror ``docs/run-format.md`` (``summary.json`` format ``mtldiag.summary/1``
and ``env.json``); ``total=False`` marks the sections only some runs have. The rules here are
defined once and called by the runs, the analysis and the report alike: what a run label
means (``sweep:``/``single:``), which run is the reference, what each evaluation measures.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Mapping, Sequence
from typing import Any, Literal, TypedDict

SUMMARY_SCHEMA = "mtldiag.summary/1"

# --------------------------------------------------------------------------- run labels

SWEEP_PREFIX = "sweep:"  # a linear-scalarization sweep point: "sweep:0.25,0.75"
SINGLE_PREFIX = "single:"  # a single-task baseline: "single:<task>"
LabelKind = Literal["method", "sweep", "single"]


def sweep_label(weights: Sequence[float]) -> str:
    """The label of the sweep point ``weights`` (on the simplex, 3 significant digits)."""
    return SWEEP_PREFIX + ",".join(f"{x:.3g}" for x in weights)


def single_label(task: str) -> str:
    """The label of the single-task baseline of ``task``."""
    return SINGLE_PREFIX + task


def label_kind(label: str) -> LabelKind:
    """``method``, ``sweep`` (linear-scalarization point) or ``single`` (single-task run)."""
    if label.startswith(SWEEP_PREFIX):
        return "sweep"
    if label.startswith(SINGLE_PREFIX):
        return "single"
    return "method"


def is_baseline(label: str) -> bool:
    """Whether a run label is a baseline (sweep point or single-task run), not a method."""
    return label_kind(label) != "method"


# --------------------------------------------------------------------------- evaluations

Evaluation = Literal["eval_fn", "val_loss", "train_loss_tail"]

EVALUATION_TEXT: dict[str, str] = {
    "eval_fn": "the spec's eval function",
    "val_loss": "the per-task loss on the validation loader (data.val)",
    "train_loss_tail": "the mean training loss over the last 10% of steps (no eval, no data.val)",
}

# --------------------------------------------------------------------------- the typed shape

Status = Literal["complete", "interrupted", "failed"]
RunStatus = Literal["ok", "failed", "interrupted"]
Severity = Literal["info", "warning", "critical"]


class PairStats(TypedDict):
    """A task pair's statistics over one layer (``None``: no instrumented step)."""

    cosine_mean: float | None
    conflict_rate: float | None
    conflict_rate_n: int  # the instrumented steps the rate rests on
    conflict_rate_ci95: list[float] | None  # its Wilson 95 % interval
    gms_mean: float | None
    conflict_cosine_mean: float | None  # mean cosine over the conflicting steps only


class PairEntry(PairStats):
    """One unordered task pair (``a`` before ``b`` in spec order), whole trunk and per layer."""

    a: str
    b: str
    layers: dict[str, PairStats]


class _RunRequired(TypedDict):
    method: str  # the run label
    seed: int
    status: RunStatus
    error: str | None
    steps: int
    instrumented_steps: int
    final_loss: dict[str, float | None]
    loss_mean: dict[str, float | None]
    initial_loss: dict[str, float | None]
    grad_norm_mean: dict[str, float | None]
    grad_norm_ratio: float | None
    weight_mean: dict[str, float | None]
    pairs: list[PairEntry]
    step_time_ms_median: float | None
    peak_memory_mb: float | None


class RunEntry(_RunRequired, total=False):
    """One (method, seed) run of ``summary["runs"]``."""

    metrics: dict[str, float | None]  # compare only, ok runs: the evaluation per task
    warnings: list[str]  # only when the method reported something
    skipped_steps: int  # fp16 only: steps the GradScaler skipped (inf/NaN gradients)
    present_steps: dict[str, int]  # only when a task had no labels on some steps
    jacobian: Literal["parameters", "representation"]  # this run's gradient space


class Finding(TypedDict):
    """One finding of the diagnosis; ``evidence`` keys depend on the ``code``."""

    code: str
    severity: Severity
    message: str
    suggestion: str
    evidence: dict[str, Any]


class PreviewMethod(TypedDict):
    """One Gramian method's first-order preview on the recorded steps."""

    method: str
    steps: int
    all_decrease_rate: float | None
    gain_mean: dict[str, float | None]
    angle_to_sum_mean: float | None


class Preview(TypedDict):
    """``profile --preview``: the plain sum (``ew``) first."""

    steps: int
    tasks: list[str]
    methods: list[PreviewMethod]


class MeanStd(TypedDict):
    """Mean and sample std over seeds (``None`` when no run of the row ended ok)."""

    mean: float | None
    std: float | None


class TaskDiff(TypedDict):
    """A task's paired relative difference against the reference, in percent (+ is worse)."""

    diff_mean: float | None
    diff_ci95: list[float] | None


class PairedDifference(TypedDict):
    """The paired difference of two rows' Δm% over the seeds both have (first − second)."""

    diff_mean: float | None
    diff_std: float | None
    diff_ci95: list[float] | None
    seeds: int


VerdictKind = Literal["significant", "within_noise", "too_few_seeds", "single_method"]


class ComparisonRow(TypedDict):
    """One method or sweep point of the comparison table, aggregated over seeds."""

    label: str
    kind: Literal["method", "sweep"]
    rank: int | None
    seeds: int
    failed: int
    metric: dict[str, MeanStd]
    delta_m_per_seed: dict[str, float]  # "<seed>": that seed's Δm% against its reference
    delta_m: float | None  # their mean
    delta_m_std: float | None  # their sample std (None with one seed)
    delta_m_ci95: list[float] | None  # Student-t 95 % interval of the mean
    per_task: dict[str, TaskDiff]
    worse_on: list[str]  # tasks whose diff_ci95 lies wholly above 0
    conflict_rate: float | None
    cosine_mean: float | None
    step_time_ms: float | None
    peak_memory_mb: float | None
    dominated_by: list[str]


class FailedRun(TypedDict):
    label: str
    seed: int | None
    error: str


class _ComparisonRequired(TypedDict):
    evaluation: str | None
    reference: Literal["single_task", "ew"] | None
    higher_is_better: dict[str, bool]
    rows: list[ComparisonRow]
    negative_transfer: list[str]
    first_vs_second: PairedDifference | None
    verdict_kind: VerdictKind
    verdict: str
    failed_runs: list[FailedRun]


class Comparison(_ComparisonRequired, total=False):
    """The ``comparison`` section of a compare summary."""

    single_task: dict[str, MeanStd]  # only with --single-task


class ProfileAsked(TypedDict):
    steps: int
    every: int
    method: str


class _CompareAskedRequired(TypedDict):
    methods: list[str]
    seeds: list[int]
    steps: int
    every: int
    single_task: bool
    sweep: int
    spec_path: str | None  # the spec file (relative paths in spec.yaml resolve from its folder)


class CompareAsked(_CompareAskedRequired, total=False):
    """``summary["compare"]``: what the comparison was asked for (``--resume`` reuses it)."""

    wrt: Literal["parameters", "representation"]  # the space of methods without an @ suffix


class _SummaryRequired(TypedDict):
    schema: str
    kind: Literal["profile", "compare"]
    name: str
    created: str
    status: Status
    tasks: list[str]
    layers: list[str]
    device: str
    runs: list[RunEntry]
    diagnosis: list[Finding]


class Summary(_SummaryRequired, total=False):
    """``summary.json``; the optional keys belong to one kind of run (see run-format.md)."""

    layer_params: dict[str, int]  # parameters per shared layer (absent when rebuilt)
    profile: ProfileAsked
    preview: Preview
    compare: CompareAsked
    evaluation: str | None
    comparison: Comparison
    rebuilt: str
    # What the per-task gradients are over; "mixed": a comparison whose methods named their
    # own space (mgda@representation), each run entry then says its own.
    jacobian: Literal["parameters", "representation", "mixed"]


class _EnvRequired(TypedDict):
    mtldiag: str
    python: str
    torch: str
    platform: str
    device: str
    threads: int
    git_sha: str | None
    argv: list[str]
    created: str


class Env(_EnvRequired, total=False):
    """``env.json``: what produced the run."""

    world_size: int  # only under torchrun
    backend: str
    cuda: str | None  # only on a CUDA device
    gpu: str
    workers: list[str]  # only with compare --jobs N >= 2: each worker slot's device
    worker_threads: int  # ... and, for CPU workers, the torch threads each one ran with


def utc_now() -> str:
    """The ``created`` timestamp: UTC, to the second."""
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


SPACE_WORDS = {"parameters": "shared parameters", "representation": "shared representation"}


def run_space(summary: Mapping[str, Any], run: Mapping[str, Any] | None = None) -> str:
    """``parameters`` or ``representation``: the space of ``run``'s gradients (default: the
    reference run's, the one the diagnosis and the one-run tables describe).

    A run entry says its own space; an older or rebuilt one takes the summary's, and a mixed
    summary's run without one is read as its method label's ``@`` suffix says.
    """
    if run is None:
        run = reference_run(summary.get("runs") or [], summary.get("tasks") or [])
    own = (run or {}).get("jacobian")
    if own in SPACE_WORDS:
        return str(own)
    label = str((run or {}).get("method") or "")
    for space in SPACE_WORDS:
        if label.endswith(f"@{space}"):
            return space
    top = summary.get("jacobian")
    return "representation" if top == "representation" else "parameters"


def gradient_space(summary: Mapping[str, Any], run: Mapping[str, Any] | None = None) -> str:
    """What a run's per-task gradients are taken w.r.t., in words for titles and findings
    (``run``: default the reference run, see :func:`run_space`).

    Representation-space numbers (``--wrt representation``, ``mgda@representation``) are never
    to read as parameter ones: every title and finding that names the space asks here.
    """
    return SPACE_WORDS[run_space(summary, run)]


def space_fact(summary: Mapping[str, Any]) -> str:
    """The report's "gradients w.r.t." fact: one space, or how a mixed comparison splits."""
    if summary.get("jacobian") != "mixed":
        return gradient_space(summary)
    default = (summary.get("compare") or {}).get("wrt") or "parameters"
    other = "representation" if default == "parameters" else "parameters"
    return (
        f"mixed: the {SPACE_WORDS[default]}, except in runs labelled @{other} "
        f"(the {SPACE_WORDS[other]}); the two spaces' numbers are never pooled"
    )


def summary_space(spaces: Sequence[str]) -> Literal["parameters", "representation", "mixed"]:
    """``summary["jacobian"]`` of runs in ``spaces``: the one space, or ``mixed``."""
    kinds = set(spaces) or {"parameters"}
    if len(kinds) > 1:
        return "mixed"
    return "representation" if kinds == {"representation"} else "parameters"


def new_summary(
    kind: Literal["profile", "compare"],
    name: str,
    tasks: Sequence[str],
    layers: Sequence[str],
    device: str,
    created: str | None = None,
    layer_params: Mapping[str, int] | None = None,
) -> Summary:
    """A summary with no run yet (status ``complete`` until a run says otherwise).

    ``layer_params`` (parameter count per shared layer) is known to a run, not to a rebuild.
    """
    summary = Summary(
        schema=SUMMARY_SCHEMA,
        kind=kind,
        name=name,
        created=created or utc_now(),
        status="complete",
        tasks=list(tasks),
        layers=list(layers),
        device=device,
        runs=[],
        diagnosis=[],
    )
    if layer_params is not None:
        summary["layer_params"] = {k: int(v) for k, v in layer_params.items()}
    return summary


# --------------------------------------------------------------------------- the reference run


def reference_run(
    runs: Sequence[Mapping[str, Any]], tasks: Sequence[str]
) -> Mapping[str, Any] | None:
    """The run whose raw task gradients the diagnosis and the one-run tables describe.

    Plain equal weighting (``ew``) when it ran, else the first run; only runs that trained
    every task count (a single-task run has no pairs), and ok runs before any cut short.
    A profile's only run is its reference whatever its status (the steps done are described).
    """
    full = [r for r in runs if len(r.get("final_loss") or {}) >= len(tasks)]
    for pool in ([r for r in full if r.get("status") == "ok"], full, list(runs)):
        if pool:
            return next((r for r in pool if r.get("method") == "ew"), pool[0])
    return None
