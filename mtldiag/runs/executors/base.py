"""The executor interface: run jobs, hand each outcome to the parent as it finishes."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

from mtldiag.rundir.writer import RunWriter
from mtldiag.runs.jobs import JobOutcome, RunJob
from mtldiag.runs.train import Observer

OnDone = Callable[[JobOutcome], None]


class Executor(Protocol):
    """Runs :class:`RunJob` s; calls ``on_done`` in the parent once per finished run.

    Rows reach ``writer`` before ``on_done`` is called for their run. On Ctrl-C an executor
    stops every run it started and lets :class:`KeyboardInterrupt` propagate; the runs
    already handed to ``on_done`` are kept.
    """

    def execute(
        self,
        jobs: Sequence[RunJob],
        writer: RunWriter,
        observer: Observer | None,
        on_done: OnDone,
    ) -> None: ...
