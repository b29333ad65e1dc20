"""The one key scheme every tracker sees, and the small interface a tracker sink implements.

Keys of one step (``tasks`` in order, pairs ``a-vs-b`` in :func:`pair_indices` order)::

    loss/<task>  grad_norm/<task>  weight/<task>          per task
    cosine/<pair>  gms/<pair>  conflict_rate/<pair>        whole shared trunk
    cosine/<pair>/<layer>                                  per shared layer
    step_time_ms  lr                                       when known

``grad_norm``, ``cosine``, ``gms`` and ``conflict_rate`` exist on instrumented steps only;
``conflict_rate`` is the running share of the instrumented steps so far with a negative
cosine (the number ``summary.json`` reports at the end). ``weight`` exists when the method
has per-task weights.

Names are made safe for every sink: MLflow accepts only letters, digits, ``_ - . / :`` and
space in a metric name (no ``|`` or ``,``), and its file store turns ``/`` into folders, so a
pair is joined by :data:`PAIR_SEP` and any other character becomes ``_``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from mtldiag.engine.gramian import ALL_LAYERS, StepMetrics

PAIR_SEP = "-vs-"  # `cosine/seg-vs-depth`: legal in MLflow, TensorBoard and W&B names
_UNSAFE = re.compile(r"[^A-Za-z0-9_.\- ]")


def safe_name(name: str) -> str:
    """A task or layer name as one key segment (no ``/``, nothing a sink refuses)."""
    return _UNSAFE.sub("_", str(name)) or "_"


def pair_key(a: str, b: str) -> str:
    return f"{safe_name(a)}{PAIR_SEP}{safe_name(b)}"


class StepRecord(Protocol):
    """What a step record must have (:class:`~mtldiag.engine.probe.ProbeStep` has it)."""

    step: int
    losses: Sequence[float | None]  # None: the task had no labels in the step's batch
    weights: Sequence[float | None] | None
    metrics: StepMetrics | None


class ConflictCounter:
    """Running conflict rate per pair over the instrumented steps it has seen."""

    def __init__(self) -> None:
        self.steps = 0
        self.negative: list[int] = []

    def update(self, cosines: Sequence[float]) -> list[float]:
        if not self.negative:
            self.negative = [0] * len(cosines)
        self.steps += 1
        for k, c in enumerate(cosines):
            self.negative[k] += int(c < 0)
        return [n / self.steps for n in self.negative]


def step_scalars(
    step: StepRecord,
    tasks: Sequence[str],
    conflicts: ConflictCounter | None = None,
    time_ms: float | None = None,
    lr: float | None = None,
) -> dict[str, float]:
    """One probe step as a flat ``{key: number}`` dict in the key scheme above.

    ``conflicts`` carries the running conflict rate from step to step (without it, no
    ``conflict_rate`` keys). Non-finite numbers are left out: a sink would refuse them; so
    are ``None`` entries (a task without labels in that step's batch).
    """
    names = [safe_name(t) for t in tasks]
    out: dict[str, float | None] = {}
    for name, v in zip(names, step.losses, strict=True):
        out[f"loss/{name}"] = v
    if step.weights is not None:
        for name, w in zip(names, step.weights, strict=True):
            out[f"weight/{name}"] = w
    m = step.metrics
    if m is not None:
        for name, g in zip(names, m.grad_norm, strict=True):
            out[f"grad_norm/{name}"] = g
        pairs = [pair_key(tasks[i], tasks[j]) for i, j in m.pairs]
        whole = m.layers.index(ALL_LAYERS)
        for pi, pair in enumerate(pairs):
            out[f"cosine/{pair}"] = m.cosine[whole][pi]
            out[f"gms/{pair}"] = m.gms[whole][pi]
        if conflicts is not None:
            for pair, rate in zip(pairs, conflicts.update(m.cosine[whole]), strict=True):
                out[f"conflict_rate/{pair}"] = rate
        for li, layer in enumerate(m.layers):
            if li == whole:
                continue
            for pi, pair in enumerate(pairs):
                out[f"cosine/{pair}/{safe_name(layer)}"] = m.cosine[li][pi]
    if time_ms is not None:
        out["step_time_ms"] = time_ms
    if lr is not None:
        out["lr"] = lr
    return {k: float(v) for k, v in out.items() if v is not None and math.isfinite(float(v))}


def flat_params(tree: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """A nested mapping (the resolved spec) as ``{"a.b.c": "value"}`` for params/config."""
    out: dict[str, str] = {}
    for key, value in tree.items():
        name = f"{prefix}{safe_name(str(key))}"
        if isinstance(value, Mapping) and value:
            out.update(flat_params(value, name + "."))
        else:
            out[name] = str(value)
    return out


def summary_text(summary: Mapping[str, Any]) -> str:
    """The diagnosis and the comparison's verdict as plain text (what a tracker shows)."""
    lines = [f"{summary.get('kind', 'run')} '{summary.get('name')}': {summary.get('status')}"]
    verdict = (summary.get("comparison") or {}).get("verdict")
    if verdict:
        lines += ["", f"Verdict: {verdict}"]
    findings = summary.get("diagnosis") or []
    if findings:
        lines += ["", "Diagnosis"]
    for f in findings:
        lines.append(f"{str(f.get('severity', 'info')).upper()}: {f.get('message', '')}")
        if f.get("suggestion"):
            lines.append(f"  -> {f['suggestion']}")
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class TrackerSetup:
    """What every sink of one command is told before the first run."""

    run_dir: Path  # the run directory (TensorBoard and offline W&B files go inside it)
    experiment: str  # the spec's name: MLflow experiment, W&B project
    group: str  # one profile or compare: MLflow parent run name, W&B group
    kind: str  # "profile" or "compare"
    params: dict[str, str] = field(default_factory=dict)  # the resolved spec, flattened


class Sink:
    """One tracker. The :class:`~mtldiag.trackers.hub.Trackers` hub calls, in order:
    ``start_run`` / ``log_step``... / ``end_run`` per (method, seed) run, then ``finish``
    once with the summary, then ``close``. Any exception switches the sink off.

    ``package`` and ``extra`` name what it needs (checked before any training).
    """

    name = "sink"
    package = ""
    extra = ""

    def start_run(self, label: str, seed: int, tasks: Sequence[str]) -> None:
        pass

    def log_step(self, scalars: Mapping[str, float], step: int) -> None:
        pass

    def end_run(self, result: Mapping[str, Any]) -> None:
        pass

    def finish(self, summary: Mapping[str, Any], run_dir: Path) -> None:
        pass

    def close(self) -> None:
        pass


def run_scalars(result: Mapping[str, Any]) -> dict[str, float]:
    """A finished run's summary numbers under the same keys (``final_loss/<task>``...)."""
    out: dict[str, float] = {}
    for section in ("final_loss", "grad_norm_mean", "weight_mean"):
        for task, v in (result.get(section) or {}).items():
            if v is not None:
                out[f"{section}/{safe_name(task)}"] = float(v)
    for pair in result.get("pairs") or []:
        key = pair_key(pair["a"], pair["b"])
        # The final conflict rate is the running `conflict_rate/<pair>` of the last step.
        for stat in ("cosine_mean", "gms_mean"):
            if pair.get(stat) is not None:
                out[f"{stat}/{key}"] = float(pair[stat])
    for stat in ("step_time_ms_median", "peak_memory_mb"):
        if result.get(stat) is not None:
            out[stat] = float(result[stat])
    return out


def run_name(label: str, seed: int) -> str:
    """How a (method, seed) run is named in a tracker."""
    return f"{label} seed {seed}"
