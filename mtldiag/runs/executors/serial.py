"""Runs one after another in this process, writing rows as they are made (``--jobs 1``)."""

from __future__ import annotations

from collections.abc import Sequence

from mtldiag.rundir.writer import RunWriter
from mtldiag.runs.executors.base import OnDone
from mtldiag.runs.jobs import JobOutcome, RunJob, execute_job
from mtldiag.runs.train import Observer, Prepared
from mtldiag.trackers.hub import Trackers


class SerialExecutor:
    """In-process execution; ``first`` is the already built model of plan entry 0, reused."""

    def __init__(self, first: Prepared | None = None, trackers: Trackers | None = None) -> None:
        self.first = first
        self.trackers = trackers or Trackers()  # get every step: the runs train here

    def execute(
        self,
        jobs: Sequence[RunJob],
        writer: RunWriter,
        observer: Observer | None,
        on_done: OnDone,
    ) -> None:
        for job in jobs:
            prep = self.first if job.index == 0 else None
            self.trackers.start_run(job.run.label, job.run.seed, list(job.run.tasks or job.tasks))
            try:
                outcome = execute_job(job, writer, observer, prep, self.trackers)
            except KeyboardInterrupt as exc:
                partial = getattr(exc, "run_result", None)
                self.trackers.end_run(partial)
                if partial is not None:  # the steps done are on disk: keep their record
                    on_done(JobOutcome(job.index, partial))
                raise
            self.trackers.end_run(outcome.run)
            on_done(outcome)
