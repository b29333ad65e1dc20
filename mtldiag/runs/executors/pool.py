"""``--jobs N``: N worker slots on this machine, each pinned to one device, a fresh process per run.

Why a fresh process per run (not a long-lived pool): each run's CPU peak memory is then its
own (the process's resident-set high-water mark only grows), no state of one run (a user
module's globals, cached CUDA memory) leaks into the next, and a run that crashes its process
fails alone. Workers are never forked from this process (a fork of a process that has started
torch's threads can deadlock): on Linux they fork from a *forkserver* that imported torch and
mtldiag once and never ran an op (a worker starts in milliseconds instead of seconds of
imports); elsewhere they are spawned.

Workers never touch the run directory. They send progress events and, at the end of a run,
its summary entry with its CSV rows over one queue; the parent writes the rows, so the files
are those ``--jobs 1`` writes (run by run, in completion order), and passes them on to the
trackers, so they get the steps ``--jobs 1`` gives them. Workers ignore SIGINT: Ctrl-C
reaches the parent, which terminates every worker; runs already handed back are kept.
"""

from __future__ import annotations

import multiprocessing as mp
import queue as queue_mod
import signal
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from mtldiag.rundir.writer import RunWriter
from mtldiag.runs.executors.base import OnDone
from mtldiag.runs.executors.devices import threads_per_worker
from mtldiag.runs.jobs import RecordingWriter, RunJob, execute_job, failed_outcome, replay
from mtldiag.runs.train import Observer

POLL_S = 0.1  # how often the parent looks for dead workers while no event arrives


class _QueueObserver:
    """A worker's observer: forwards the trainer's callbacks to the parent's queue."""

    def __init__(self, q: Any, slot: int) -> None:
        self.q, self.slot = q, slot

    def run_started(self, label: str, seed: int, steps: int) -> None:
        self.q.put(("started", self.slot, (label, seed, steps)))

    def step_done(self, step: int, losses: dict[str, float]) -> None:
        self.q.put(("step", self.slot, (step, losses)))

    def run_finished(self, result: dict[str, Any]) -> None:
        pass  # the outcome message carries it


def _worker(job: RunJob, slot: int, q: Any) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C for everyone
    try:
        rec = RecordingWriter()
        outcome = execute_job(job, rec, _QueueObserver(q, slot))
        outcome.rows = rec.rows
        q.put(("done", slot, outcome))
    except BaseException as exc:  # noqa: BLE001 - every failure must reach the parent
        q.put(("error", slot, exc))


def _context() -> Any:
    if "forkserver" in mp.get_all_start_methods():
        ctx = mp.get_context("forkserver")
        ctx.set_forkserver_preload(["mtldiag.runs.jobs"])
        return ctx
    return mp.get_context("spawn")


class PoolExecutor:
    """N slots; slot i trains on ``devices[i]`` with ``threads`` CPU threads per worker."""

    def __init__(self, devices: list[str]) -> None:
        self.devices = devices
        self.threads = threads_per_worker(devices)

    def execute(
        self,
        jobs: Sequence[RunJob],
        writer: RunWriter,
        observer: Observer | None,
        on_done: OnDone,
    ) -> None:
        ctx = _context()
        q = ctx.Queue()
        pending = list(jobs)
        live: dict[int, Any] = {}  # slot -> process
        running: dict[int, RunJob] = {}  # slot -> its job
        focus = getattr(observer, "focus", None)
        try:
            while pending or live:
                for slot in range(len(self.devices)):
                    if slot not in live and pending:
                        job = replace(
                            pending.pop(0), device=self.devices[slot], threads=self.threads
                        )
                        proc = ctx.Process(target=_worker, args=(job, slot, q), daemon=True)
                        proc.start()
                        live[slot], running[slot] = proc, job
                try:
                    kind, slot, payload = q.get(timeout=POLL_S)
                except queue_mod.Empty:
                    self._reap_dead(live, running, q, on_done)
                    continue
                if kind == "started" and observer is not None:
                    if focus is not None:
                        focus(slot)
                    observer.run_started(*payload)
                elif kind == "step" and observer is not None:
                    if focus is not None:
                        focus(slot)
                    observer.step_done(*payload)
                elif kind == "done":
                    replay(payload, writer)
                    if observer is not None:
                        if focus is not None:
                            focus(slot)
                        observer.run_finished(payload.run)
                    on_done(payload)
                    live.pop(slot).join()
                    running.pop(slot)
                elif kind == "error":
                    raise payload
        finally:
            for proc in live.values():  # Ctrl-C or an error: stop every worker still running
                proc.terminate()
            for proc in live.values():
                proc.join()
            q.close()

    @staticmethod
    def _reap_dead(
        live: dict[int, Any], running: dict[int, RunJob], q: Any, on_done: OnDone
    ) -> None:
        """A worker that died without a word (killed, out of memory) fails its run alone."""
        for slot, proc in list(live.items()):
            if proc.is_alive() or proc.exitcode == 0:
                continue
            job = running.pop(slot)
            live.pop(slot)
            err = f"{job.run.label} (seed {job.run.seed}): its worker process died "
            on_done(failed_outcome(job, err + f"(exit code {proc.exitcode})."))
