"""Device choice, step timing and peak memory on every device path, exercised on CPU."""

from types import SimpleNamespace

import pytest
import torch

from mtldiag.engine import device
from mtldiag.engine.device import resolve_device
from mtldiag.errors import SpecError


def test_auto_prefers_cuda_then_mps_then_cpu(monkeypatch):
    mps = SimpleNamespace(is_available=lambda: True)
    monkeypatch.setattr(torch.backends, "mps", mps, raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto").type == "cuda"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto").type == "mps"
    mps.is_available = lambda: False
    assert resolve_device("auto") == torch.device("cpu")


@pytest.mark.parametrize(
    ("name", "match"),
    [
        ("gpu", "is not a device name"),
        ("meta", "is not supported"),
        ("cuda", "CUDA is not available"),
        ("mps", "MPS is not available"),
    ],
)
def test_bad_or_missing_device_is_a_spec_error(monkeypatch, name, match):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(
        torch.backends, "mps", SimpleNamespace(is_available=lambda: False), raising=False
    )
    with pytest.raises(SpecError, match=match):
        resolve_device(name)


def test_cuda_index_beyond_the_gpus_present(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert resolve_device("cuda:0") == torch.device("cuda:0")
    with pytest.raises(SpecError, match="does not exist: 1 GPU"):
        resolve_device("cuda:1")


def test_cpu_timer_measures_wall_time():
    timer = device.StepTimer(torch.device("cpu"))
    timer.start()
    torch.ones(1000, 1000).sum()
    assert timer.stop() > 0


def test_cuda_timer_uses_events_and_synchronises(monkeypatch):
    calls = []

    class Event:
        def __init__(self, enable_timing=False):
            assert enable_timing
            self.t = None

        def record(self):
            self.t = len(calls)
            calls.append("record")

        def elapsed_time(self, other):
            assert calls[-1] == "sync", "elapsed time read before synchronising"
            return 7.5

    monkeypatch.setattr(torch.cuda, "Event", Event)
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: calls.append("sync"))
    timer = device.StepTimer(torch.device("cuda"))
    timer.start()
    assert timer.stop() == 7.5 and calls == ["record", "record", "sync"]


def test_cuda_peak_memory_reads_the_allocator(monkeypatch):
    seen = {}
    monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda d: 3 * 2**20)
    monkeypatch.setattr(torch.cuda, "reset_peak_memory_stats", lambda d: seen.setdefault("r", d))
    dev = torch.device("cuda")
    device.reset_peak_memory(dev)
    assert seen["r"] == dev and device.peak_memory_mb(dev) == 3.0
