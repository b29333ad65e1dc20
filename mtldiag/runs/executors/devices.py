"""Which device each worker slot trains on, and how many CPU threads it gets."""

from __future__ import annotations

import os

import torch

from mtldiag.engine import distributed
from mtldiag.engine.device import resolve_device
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
    if jobs > 1 and device not in ("auto", "cpu", "cuda"):
        raise MtldiagError(
            f"--jobs {jobs} asks for {jobs} devices but the device is pinned to '{device}'.",
            hint="use --device cuda (every visible GPU, round robin) or --jobs 1",
        )
    # The one-job rule decides (auto: cuda, then mps, then cpu; a device that is not here is
    # refused with its own message), so --jobs N never picks another device than --jobs 1.
    dev = resolve_device(device)
    if dev.type == "cuda" and dev.index is None:
        k = torch.cuda.device_count()
        return [f"cuda:{i % k}" for i in range(jobs)]
    if dev.type == "cpu":
        cores = os.cpu_count() or 1
        if jobs > cores:
            raise MtldiagError(
                f"--jobs {jobs} asks for more workers than this machine's {cores} CPU cores.",
                hint=f"use --jobs {cores} or fewer",
            )
        return ["cpu"] * jobs
    if jobs > 1:  # auto found one device only (mps)
        raise MtldiagError(
            f"--jobs {jobs} asks for {jobs} devices but this machine's is one device, '{dev}'.",
            hint="use --device cpu for CPU workers, or --jobs 1",
        )
    return [str(dev)]


def threads_per_worker(devices: list[str]) -> int | None:
    """CPU workers split this process's threads between them; GPU workers keep the default."""
    if devices and all(d == "cpu" for d in devices):
        return max(1, torch.get_num_threads() // len(devices))
    return None
