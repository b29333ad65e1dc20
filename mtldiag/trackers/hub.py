"""The trackers of one ``profile`` or ``compare``: every sink fed the same records, none able
to stop or change training."""

from __future__ import annotations

import contextlib
import random
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mtldiag.engine.gramian import StepMetrics
from mtldiag.trackers.base import ConflictCounter, Sink, StepRecord, step_scalars


class TrackerWarning(UserWarning):
    """A tracker failed and was switched off; training and the run directory went on."""


@contextlib.contextmanager
def _rng_kept() -> Iterator[None]:
    # A tracker may draw from the global generators (run ids, sampling): put them back so
    # that a run trains the same with or without trackers.
    state = (random.getstate(), np.random.get_state(), torch.get_rng_state())
    try:
        yield
    finally:
        random.setstate(state[0])
        np.random.set_state(state[1])
        torch.set_rng_state(state[2])


@dataclass(frozen=True)
class RowStep:
    """One run-directory row as a :class:`~mtldiag.trackers.base.StepRecord`."""

    step: int
    losses: Sequence[float | None]
    weights: Sequence[float | None] | None
    metrics: StepMetrics | None


class Trackers:
    """Sends each run's start, steps, end and the final summary to every sink.

    A sink that raises is closed and dropped with one :class:`TrackerWarning`; the other sinks
    and training go on. Empty (no sinks) when nothing is asked for or off rank 0.
    """

    def __init__(self, sinks: Sequence[Sink] = ()) -> None:
        self.sinks = list(sinks)
        self.tasks: list[str] = []
        self._conflicts = ConflictCounter()

    def __bool__(self) -> bool:
        return bool(self.sinks)

    def __enter__(self) -> Trackers:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start_run(self, label: str, seed: int, tasks: Sequence[str]) -> None:
        self.tasks = list(tasks)
        self._conflicts = ConflictCounter()  # the running conflict rate is per run
        self._each("start_run", label, seed, self.tasks)

    def log_step(
        self, step: StepRecord, time_ms: float | None = None, lr: float | None = None
    ) -> None:
        if not self.sinks:
            return
        scalars = step_scalars(step, self.tasks, self._conflicts, time_ms=time_ms, lr=lr)
        self._each("log_step", scalars, step.step)

    def log_row(
        self,
        method: str,
        seed: int,
        step: int,
        time_ms: float,
        memory_mb: float,
        losses: Sequence[float | None],
        weights: Sequence[float | None] | None,
        metrics: StepMetrics | None,
        tasks: Sequence[str] | None = None,
        lr: float | None = None,
    ) -> None:
        """One step from the row the run directory gets (``RunWriter.write_step``'s arguments).

        The one way steps reach the trackers: an in-process run's writer passes each row on
        as it writes it (:class:`TrackedWriter`), the parent of a worker passes on each row
        it replays. Both streams are therefore the rows of ``steps.csv``, step for step,
        including the row of a step whose loss was NaN/Inf: its finite numbers are logged
        (:func:`~mtldiag.trackers.base.step_scalars` drops the others).
        """
        self.log_step(RowStep(step, losses, weights, metrics), time_ms, lr)

    def end_run(self, result: Mapping[str, Any] | None) -> None:
        if result is not None:
            self._each("end_run", result)

    def finish(self, summary: Mapping[str, Any], run_dir: Path) -> None:
        self._each("finish", summary, Path(run_dir))

    def close(self) -> None:
        for sink in list(self.sinks):
            self._call(sink, "close")
        self.sinks = []

    def _each(self, what: str, *args: Any) -> None:
        for sink in list(self.sinks):
            self._call(sink, what, *args)

    def _call(self, sink: Sink, what: str, *args: Any) -> None:
        try:
            with _rng_kept():
                getattr(sink, what)(*args)
        except Exception as exc:  # a tracker must never stop training
            if sink not in self.sinks:
                return
            self.sinks.remove(sink)
            warnings.warn(
                f"the {sink.name} tracker failed in {what} ({type(exc).__name__}: {exc}); "
                "it is switched off for the rest of this command, training goes on",
                TrackerWarning,
                stacklevel=2,
            )
            with contextlib.suppress(Exception):
                sink.close()


class TrackedWriter:
    """A run's row writer (``RunWriter``, ``RecordingWriter`` or none) whose every row also goes
    to the trackers, through :meth:`Trackers.log_row`."""

    def __init__(self, writer: Any, trackers: Trackers) -> None:
        self.writer, self.trackers = writer, trackers

    def write_step(self, *row: Any, **named: Any) -> None:
        if self.writer is not None:
            self.writer.write_step(*row, **named)
        self.trackers.log_row(*row, **named)
