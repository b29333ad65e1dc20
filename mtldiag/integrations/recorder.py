"""Profiling a loop that mtldiag does not run (Lightning, the HF Trainer, a user's own).

The loop computes the task losses and back-propagates their total as usual. Every K-th step
:class:`LoopProfiler` takes the per-task gradients over the shared parameters from the same
graph (T ``autograd.grad`` calls, graph retained for the loop's own backward), never touches
``.grad`` — so training is unchanged — and writes the usual run directory: ``steps.csv``,
``pairs.csv``, then ``summary.json`` with the diagnosis and ``report.html``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import nn

from mtldiag.engine.device import peak_memory_mb
from mtldiag.engine.gramian import ALL_LAYERS, stacked_gramians_from_grads, step_metrics
from mtldiag.engine.jacobian import JacobianEngine
from mtldiag.engine.probe import ProbeStep
from mtldiag.engine.representation import REPRESENTATION_LAYER, metric_layers, space_of
from mtldiag.engine.shared import SharedSelection, select_shared
from mtldiag.errors import UserCodeError
from mtldiag.report import write_report
from mtldiag.rundir.accumulate import RunAccumulator
from mtldiag.rundir.schema import new_summary
from mtldiag.rundir.summary import conclude_profile
from mtldiag.rundir.writer import RunWriter, environment
from mtldiag.trackers.base import ConflictCounter, step_scalars


def task_losses(output: Any, key: str = "task_losses") -> dict[str, torch.Tensor]:
    """The per-task losses of a step's output: ``output[key]`` (a ``{task: scalar}`` dict)."""
    found = output.get(key) if isinstance(output, Mapping) else getattr(output, key, None)
    if not isinstance(found, Mapping) or not found:
        got = ", ".join(map(str, output)) if isinstance(output, Mapping) else type(output).__name__
        raise UserCodeError(
            f"the training step's output has no '{key}' dict of per-task losses (got: {got}).",
            hint=f"return {{'loss': total, '{key}': {{'task': loss, ...}}}}",
        )
    return dict(found)


class LoopProfiler:
    """Measures someone else's training loop every ``every`` steps into a run directory.

    ``shared``: ``"auto"`` (parameters reached by two or more tasks) or glob patterns.
    Nothing is written before the first :meth:`step`; :meth:`finish` writes the summary and
    the report and returns the summary.
    """

    def __init__(
        self,
        model: nn.Module,
        out: str | Path,
        every: int = 10,
        shared: str | Sequence[str] = "auto",
        name: str = "run",
        label: str = "train",
        seed: int = 0,
        source: str = "",
    ) -> None:
        self.model, self.out, self.every = model, Path(out), every
        self.shared, self.name, self.label, self.seed = shared, name, label, seed
        self.source = source  # what ran the loop, kept in spec.yaml
        self.tasks: list[str] = []
        self.engine: JacobianEngine | None = None
        self.writer: RunWriter | None = None
        self.acc: RunAccumulator | None = None
        self.device = torch.device("cpu")
        self.conflicts = ConflictCounter()
        self.jacobian = "parameters"

    def start(
        self,
        losses: Mapping[str, torch.Tensor],
        selection: SharedSelection | None = None,
        representation: bool = False,
    ) -> None:
        """Find the tasks and shared parameters on the first losses (or take a probe's
        ``selection``, when its backward has freed the graph); open the run directory.

        ``representation``: the records come from a probe fed ``features=z`` (their metrics
        have the one layer ``representation``); the summary then says so."""
        self.tasks = list(losses)
        if selection is None:
            selection = select_shared(self.model, losses, self.shared)
        self.engine = JacobianEngine(selection.layout, selection.others)
        self.device = next(iter(losses.values())).device
        self.jacobian = space_of(representation)
        rep = REPRESENTATION_LAYER if representation else None
        self.layers = [ALL_LAYERS, *metric_layers(rep, selection.layout.layers)]
        self.acc = RunAccumulator(self.label, self.seed, self.tasks, self.layers)
        self.writer = RunWriter(self.out, self.tasks)
        spec = {"name": self.name, "source": self.source, "profile": {"every": self.every}}
        self.writer.open(yaml.safe_dump(spec, sort_keys=False), environment(self.device))

    def measure(self, losses: Mapping[str, torch.Tensor], step: int) -> ProbeStep:
        """Step ``step``'s losses and, on an instrumented step, its task gradients' metrics.

        Call it while the losses' graph is alive (before the loop's backward).
        """
        if self.engine is None:
            self.start(losses)
        assert self.engine is not None
        ordered = [losses[t] for t in self.tasks]
        values = torch.stack([v.detach().float().reshape(()) for v in ordered]).tolist()
        metrics = None
        if self.every > 0 and step % self.every == 0:
            layout = self.engine.layout
            grads = self.engine.task_grads(ordered, accumulate_heads=False, retain_graph=True)
            metrics = step_metrics(stacked_gramians_from_grads(grads, layout), layout)
        return ProbeStep(step, metrics is not None, values, None, metrics, None)

    def record(self, record: ProbeStep, time_ms: float = 0.0) -> None:
        """One row of the run directory for ``record`` (from :meth:`measure` or a probe)."""
        if self.writer is None or self.acc is None:
            raise RuntimeError("LoopProfiler.record before start(): the tasks are not known")
        mem = peak_memory_mb(self.device)
        w, m = record.weights, record.metrics
        self.writer.write_step(
            self.label, self.seed, record.step, time_ms, mem, record.losses, w, m
        )
        self.acc.add(record.losses, time_ms, mem, w, m)

    def scalars(self, record: ProbeStep) -> dict[str, float]:
        """``record`` in the trackers' key scheme (with the running conflict rate)."""
        return step_scalars(record, self.tasks, self.conflicts)

    def finish(self, status: str = "complete") -> dict[str, Any] | None:
        """Write ``summary.json`` (with the diagnosis) and the report; ``None`` if no step ran."""
        if self.writer is None or self.acc is None:
            return None
        run = self.acc.result()
        run["jacobian"] = self.jacobian
        summary = new_summary("profile", self.name, self.tasks, self.layers[1:], str(self.device))
        summary["jacobian"] = self.jacobian
        summary["profile"] = {"steps": run["steps"], "every": self.every, "method": self.label}
        conclude_profile(summary, run, status)
        self.writer.write_summary(summary)
        self.writer.close()
        if self.writer.enabled:
            write_report(self.out)
        self.writer = None
        return summary
