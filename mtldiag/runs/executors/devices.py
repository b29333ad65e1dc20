"""Which device each worker slot trains on, and how many CPU threads it gets."""

from __future__ import annotations

import os

import torch

from mtldiag.engine import distributed
from mtldiag.errors import MtldiagError


def worker_devices(device: str, jobs: int) -> list[str]:
    """One device per worker slot: ``cuda:0 .. cuda:k-1`` round robin, or ``cpu`` for each.

    ``device`` is the spec's (``auto``, ``cpu``, ``cuda``, ``cuda:N``, ``mps``). A device the
    user pinned (``cuda:N``, ``mps``) is one device: more than one job on it is refused, as is
    more CPU workers than cores.
    """
    if jobs < 1:
        raise MtldiagError(f"--jobs must be at least 1, not {jobs}.", hint="for example --jobs 4")
    if jobs > 1 and distributed.context() is not None:
        raise MtldiagError(
            "--jobs runs many runs side by side; under torchrun one run is data-parallel.",
            hint="use torchrun for one large run, --jobs (or --executor ray) for many runs",
        )
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda":
        k = torch.cuda.device_count()
        return [f"cuda:{i % k}" for i in range(jobs)]
    if device == "cpu":
        cores = os.cpu_count() or 1
        if jobs > cores:
            raise MtldiagError(
                f"--jobs {jobs} asks for more workers than this machine's {cores} CPU cores.",
                hint=f"use --jobs {cores} or fewer",
            )
        return ["cpu"] * jobs
    if jobs > 1:
        raise MtldiagError(
            f"--jobs {jobs} asks for {jobs} devices but the device is pinned to '{device}'.",
            hint="use --device cuda (every visible GPU, round robin) or --jobs 1",
        )
    return [device]


def threads_per_worker(devices: list[str]) -> int | None:
    """CPU workers split this process's threads between them; GPU workers keep the default."""
    if devices and all(d == "cpu" for d in devices):
        return max(1, torch.get_num_threads() // len(devices))
    return None
