"""What depends on the hardware: the device choice, autocast, step timing and peak memory.

``auto`` picks cuda, then mps, then cpu. CUDA steps are timed with events (the host clock
would time the kernel launches, not the kernels); CPU and MPS with ``perf_counter``.
"""

from __future__ import annotations

import resource
import sys
import time
from typing import Any

import torch

from mtldiag.errors import SpecError


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` picks cuda, then mps, then cpu; an explicit device must exist."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(name)
    except (RuntimeError, TypeError):
        raise SpecError(
            f"device '{name}' is not a device name.", hint="use auto, cpu, cuda, cuda:N or mps"
        ) from None
    if dev.type not in ("cpu", "cuda", "mps"):
        raise SpecError(
            f"device '{name}' is not supported.", hint="use auto, cpu, cuda, cuda:N or mps"
        )
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise SpecError(
            f"device '{name}' was asked for but CUDA is not available here.",
            hint="use --device auto or --device cpu",
        )
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise SpecError(f"device '{name}' does not exist: {torch.cuda.device_count()} GPU(s).")
    if dev.type == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise SpecError(
                "device 'mps' was asked for but MPS is not available here.",
                hint="use --device auto or --device cpu",
            )
    return dev


def autocast(device: torch.device, precision: str) -> Any:
    if precision == "fp32":
        return torch.autocast(device_type=device.type, enabled=False)
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


class StepTimer:
    """Wall time of a step: CUDA events (with synchronisation) on GPU, perf_counter else."""

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"
        self.device = device

    def start(self) -> None:
        if self.cuda:
            self._a = torch.cuda.Event(enable_timing=True)
            self._b = torch.cuda.Event(enable_timing=True)
            self._a.record()
        else:
            self._t0 = time.perf_counter()

    def stop(self) -> float:
        if self.cuda:
            self._b.record()
            torch.cuda.synchronize(self.device)
            return float(self._a.elapsed_time(self._b))
        return (time.perf_counter() - self._t0) * 1e3


def reset_peak_memory(device: torch.device) -> None:
    """Start a run's peak-memory count afresh, so compared runs do not inherit earlier peaks.

    On CPU the peak is the process's resident-set high-water mark, which only grows; Linux
    lets a process reset it (``/proc/self/clear_refs``, value 5). Elsewhere it stays
    process-wide, which the run-format doc says.
    """
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        return
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def peak_memory_mb(device: torch.device) -> float:
    """CUDA allocator peak on GPU; process peak RSS otherwise (Linux reports KiB)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024  # bytes on macOS
