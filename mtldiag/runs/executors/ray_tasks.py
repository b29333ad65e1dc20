"""``--executor ray``: each (method, seed) run as one Ray task, on a cluster or a local Ray.

The driver (this process) submits the jobs, collects each outcome as it finishes and writes its
rows and summary entry into the one run directory; tasks never touch it (on a cluster they
may not even see it). A task asks for one GPU when the cluster has GPUs and the spec does not
pin the CPU, so Ray places at most one run per GPU and sets ``CUDA_VISIBLE_DEVICES`` for it.

Every node must be able to import mtldiag and the spec's own modules (install them in the
cluster's image, or pass a Ray ``runtime_env`` when you start the cluster).
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from mtldiag.errors import MtldiagError
from mtldiag.rundir.writer import RunWriter
from mtldiag.runs.executors.base import OnDone
from mtldiag.runs.jobs import (
    JobOutcome,
    RecordingWriter,
    RunJob,
    execute_job,
    failed_outcome,
    replay,
)
from mtldiag.runs.train import Observer

WAIT_S = 0.5  # how long ray.wait blocks before the loop checks again
REACH_S = 5.0  # Ray itself retries an unreachable head for minutes: a TCP check first


def check_reachable(address: str) -> None:
    """Refuse a ``host:port`` (or ``ray://host:port``) that nothing answers on, in seconds."""
    target = address.removeprefix("ray://")
    host, _, port = target.rpartition(":")
    if not host or not port.isdigit():
        raise MtldiagError(
            f"--ray-address '{address}' is not host:port.",
            hint="for example --ray-address 10.0.0.5:6379 (the head node), or auto",
        )
    try:
        socket.create_connection((host, int(port)), timeout=REACH_S).close()
    except OSError as exc:
        raise MtldiagError(
            f"cannot reach the Ray cluster at '{address}': {exc.strerror or exc}.",
            hint="check --ray-address (host:port of the head node), or omit it to start "
            "a local Ray",
        ) from None


def _import_ray() -> Any:
    # Lazy: ray is the optional [ray] extra, imported only when this executor runs.
    try:
        import ray
    except ImportError:
        raise MtldiagError(
            "--executor ray needs Ray, which is not installed.",
            hint="pip install 'mtldiag[ray]'",
        ) from None
    return ray


def _ray_run(job: RunJob) -> JobOutcome:
    rec = RecordingWriter()
    outcome = execute_job(job, rec)
    outcome.rows = rec.rows
    return outcome


class RayExecutor:
    """Ray tasks; ``address``: a running cluster (``host:port``, ``ray://...``, ``auto``) or
    ``None`` to start a local one (``num_cpus`` caps it, for tests and laptops)."""

    def __init__(self, address: str | None = None, num_cpus: int | None = None) -> None:
        self.address = address
        self.num_cpus = num_cpus
        self.started = False  # whether connect() started Ray (and execute must shut it down)

    def connect(self) -> None:
        """Connect to the cluster (or start a local one) now, before anything is built."""
        ray = _import_ray()
        if ray.is_initialized():
            return
        if self.address not in (None, "auto"):
            check_reachable(self.address)
        kwargs: dict[str, Any] = {
            "log_to_driver": False,  # a library never prints: task output stays in Ray's logs
            "logging_level": logging.WARNING,
            "include_dashboard": False,
        }
        if self.address is None:
            kwargs["num_cpus"] = self.num_cpus
        try:
            ray.init(address=self.address, **kwargs)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise MtldiagError(
                f"cannot reach the Ray cluster at '{self.address}': {first}",
                hint="check --ray-address (host:port of the head node), or omit it to start "
                "a local Ray",
            ) from None
        self.started = True

    def execute(
        self,
        jobs: Sequence[RunJob],
        writer: RunWriter,
        observer: Observer | None,
        on_done: OnDone,
    ) -> None:
        ray = _import_ray()
        self.connect()
        refs: dict[Any, RunJob] = {}
        try:
            gpus = ray.cluster_resources().get("GPU", 0) > 0
            remote = ray.remote(num_cpus=1, num_gpus=1 if gpus else 0, max_retries=0)(_ray_run)
            for job in jobs:
                use_gpu = gpus and job.spec.device in ("auto", "cuda")
                placed = replace(job, device="cuda:0" if use_gpu else "cpu")
                refs[remote.options(num_gpus=1 if use_gpu else 0).remote(placed)] = job
            while refs:
                done, _ = ray.wait(list(refs), num_returns=1, timeout=WAIT_S)
                for ref in done:
                    job = refs.pop(ref)
                    try:
                        outcome = ray.get(ref)
                    except ray.exceptions.RayTaskError as exc:
                        cause = exc.cause if hasattr(exc, "cause") else exc
                        if isinstance(cause, MtldiagError):
                            raise cause from None
                        outcome = failed_outcome(
                            job, f"{job.run.label}: its Ray task failed: {cause}"
                        )
                    replay(outcome, writer)
                    if observer is not None:
                        observer.run_finished(outcome.run)
                    on_done(outcome)
        finally:
            for ref in refs:  # Ctrl-C or an error: cancel what is still queued or running
                ray.cancel(ref, force=True)
            if self.started:
                ray.shutdown()
                self.started = False
