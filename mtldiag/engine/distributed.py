"""Data-parallel runs under ``torchrun``: process group, data shards, global gradients, one voice.

``torchrun --nproc-per-node N -m mtldiag profile SPEC`` starts N processes that each run the
whole command. This module makes them one run:

* :func:`setup_device` notices torchrun (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``), starts the
  process group (NCCL on CUDA, Gloo on CPU) and puts each rank on ``cuda:LOCAL_RANK``;
* :func:`shard_loader` gives a map-style ``DataLoader`` a ``DistributedSampler``;
* :func:`average_` is the mean across ranks of one flat buffer (the T x P Jacobian), so the
  Gramian, cosines and norms are those of the global batch. A mean of per-rank cosines would be
  a different number: ``cos(mean g_a, mean g_b) != mean cos(g_a, g_b)``;
* rank 0 alone writes and speaks (:func:`is_main`); an error on one rank is published in the
  rendezvous store so rank 0 prints it and every rank stops (:func:`failure`, the watchdog).

With one process (or ``WORLD_SIZE=1``) nothing here runs a collective: :func:`context` is None.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import inspect
import json
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from mtldiag.engine.device import resolve_device
from mtldiag.errors import SpecError

# Collectives run on slices of at most this many bytes, so a large Jacobian does not need one
# transport buffer of its own size (and NCCL/Gloo can pipeline the slices).
BUCKET_BYTES = 32 * 2**20
POLL_S = 0.2  # how often the watchdog looks for another rank's error
GRACE_S = 5.0  # how long rank 0 lets its own code reach the same (deterministic) error first
_ERROR_KEY = "mtldiag/error"
_DONE_KEY = "mtldiag/rank0-done"


@dataclass(frozen=True)
class DistContext:
    """This process's place in a multi-process run."""

    rank: int
    world_size: int
    local_rank: int
    backend: str


_ctx: DistContext | None = None
_finished = threading.Event()  # set when this rank's command has ended (success or error)
_watchdog: threading.Thread | None = None
_speaker: Callable[[str, str | None, int], None] | None = None
_timeout = _dt.timedelta(minutes=30)


def env_world() -> tuple[int, int, int] | None:
    """``(rank, world_size, local_rank)`` from torchrun's environment; None for one process."""
    try:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
        local = int(os.environ.get("LOCAL_RANK", str(rank)))
    except ValueError:
        return None
    return (rank, world, local) if world > 1 else None


def is_main() -> bool:
    """True on rank 0 and outside torchrun: the process that writes files and shows progress.

    Read from the environment, so it holds before the process group exists.
    """
    env = env_world()
    return env is None or env[0] == 0


def context() -> DistContext | None:
    """The process group mtldiag started, or None (one process)."""
    return _ctx


def setup_device(name: str = "auto") -> torch.device:
    """Resolve ``name`` to a device; under torchrun also start the process group (once).

    On CUDA each rank gets ``cuda:LOCAL_RANK`` whatever index the spec names.
    """

    dev = resolve_device(name)
    env = env_world()
    if env is None:
        return dev
    rank, world, local = env
    if dev.type == "cuda":
        dev = torch.device("cuda", local % max(torch.cuda.device_count(), 1))
        torch.cuda.set_device(dev)
    elif dev.type != "cpu":
        raise SpecError(
            f"device '{dev}' cannot run under torchrun: multi-process runs need CUDA or CPU.",
            hint="use --device cuda or --device cpu",
        )
    _init(rank, world, local, "nccl" if dev.type == "cuda" else "gloo")
    return dev


def _init(rank: int, world: int, local: int, backend: str) -> None:
    global _ctx, _watchdog
    if _ctx is not None:
        return
    if not dist.is_initialized():
        dist.init_process_group(backend, rank=rank, world_size=world, timeout=_timeout)
    _ctx = DistContext(dist.get_rank(), dist.get_world_size(), local, dist.get_backend())
    _finished.clear()
    _watchdog = threading.Thread(target=_watch, name="mtldiag-watchdog", daemon=True)
    _watchdog.start()


def shutdown() -> None:
    """Leave the process group (tests and library callers; the CLI does it in :func:`finish`)."""
    global _ctx, _watchdog
    _finished.set()
    if _watchdog is not None:
        # The thread may be inside a store call; let it return before the store goes away
        # (a C++ thread torn down mid-call aborts the process).
        _watchdog.join(timeout=2 * POLL_S + 1.0)
        _watchdog = None
    if _ctx is not None and dist.is_initialized():
        dist.destroy_process_group()
    _ctx = None


# ---------------------------------------------------------------------------------- data


def accepts_shard_args(fn: Callable[..., Any]) -> bool:
    """A data factory that names ``rank`` and ``world_size`` shards itself."""
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False
    return "rank" in params and "world_size" in params


def shard_loader(loader: Any, seed: int, factory: str = "data") -> Any:
    """The same ``DataLoader`` reading only this rank's share of the data set.

    A map-style loader with the default sampler gets a ``DistributedSampler`` (shuffled iff
    the original was, seeded by ``seed``; padded so every rank has as many batches). A loader
    that already has one is kept. Anything else cannot be split here and is refused: every
    rank would train on the same batches, which is not data parallelism.
    """
    from torch.utils.data import (
        BatchSampler,
        DataLoader,
        IterableDataset,
        RandomSampler,
        SequentialSampler,
    )
    from torch.utils.data.distributed import DistributedSampler

    ctx = _ctx
    if ctx is None:
        return loader
    if isinstance(loader, DataLoader) and isinstance(loader.sampler, DistributedSampler):
        return loader
    default = (
        isinstance(loader, DataLoader)
        and not isinstance(loader.dataset, IterableDataset)
        and type(loader.sampler) in (RandomSampler, SequentialSampler)
        and not getattr(loader.sampler, "replacement", False)
        and (loader.batch_sampler is None or type(loader.batch_sampler) is BatchSampler)
    )
    if not default:
        raise SpecError(
            f"data factory '{factory}' returned a {type(loader).__name__} that mtldiag cannot "
            f"split across the {ctx.world_size} processes (an iterable data set or a custom "
            "sampler).",
            hint="return a map-style DataLoader without a custom sampler, or give the factory "
            "'rank' and 'world_size' keyword arguments and shard the data there",
        )
    sampler = DistributedSampler(
        loader.dataset,
        num_replicas=ctx.world_size,
        rank=ctx.rank,
        shuffle=isinstance(loader.sampler, RandomSampler),
        seed=seed,
        drop_last=False,
    )
    kwargs: dict[str, Any] = {
        "batch_size": loader.batch_size,
        "drop_last": loader.drop_last,
        "sampler": sampler,
        "num_workers": loader.num_workers,
        "collate_fn": loader.collate_fn,
        "pin_memory": loader.pin_memory,
        "timeout": loader.timeout,
        "worker_init_fn": loader.worker_init_fn,
        "generator": loader.generator,
        "multiprocessing_context": loader.multiprocessing_context,
        "persistent_workers": loader.persistent_workers,
    }
    if loader.num_workers > 0:
        kwargs["prefetch_factor"] = loader.prefetch_factor
    return DataLoader(loader.dataset, **kwargs)


# --------------------------------------------------------------------------- collectives


def average_(tensor: torch.Tensor) -> torch.Tensor:
    """In place: the mean of a contiguous tensor across ranks (sum, then / world size).

    One all-reduce per bucket of :data:`BUCKET_BYTES`, issued together and then awaited. Every
    rank receives the same bits, so whatever is derived from the result is identical across
    ranks. A no-op with one process.
    """
    ctx = _ctx
    if ctx is None:
        return tensor
    flat = tensor.view(-1)
    per = max(1, BUCKET_BYTES // flat.element_size())
    works = [dist.all_reduce(chunk, async_op=True) for chunk in flat.split(per)]
    for w in works:
        w.wait()
    flat.div_(ctx.world_size)
    return tensor


def average_grads(params: Sequence[torch.Tensor]) -> None:
    """Average ``.grad`` of ``params`` across ranks (one flat buffer per dtype).

    A parameter whose gradient exists on some rank only gets zeros where it is missing (a
    data-dependent branch); one missing on every rank stays None.
    """
    ctx = _ctx
    if ctx is None or not params:
        return
    device = params[0].device
    present = torch.tensor([p.grad is not None for p in params], dtype=torch.float32, device=device)
    dist.all_reduce(present, op=dist.ReduceOp.MAX)
    chosen = [p for p, flag in zip(params, present.tolist(), strict=True) if flag]
    for p in chosen:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    by_dtype: dict[torch.dtype, list[torch.Tensor]] = {}
    for p in chosen:
        by_dtype.setdefault(p.grad.dtype, []).append(p)  # type: ignore[union-attr]
    for group in by_dtype.values():
        flat = torch.cat([p.grad.reshape(-1) for p in group])  # type: ignore[union-attr]
        average_(flat)
        offset = 0
        for p in group:
            n = p.numel()
            p.grad.copy_(flat[offset : offset + n].view_as(p))  # type: ignore[union-attr]
            offset += n


def broadcast_object(obj: Any) -> Any:
    """Rank 0's ``obj`` on every rank (label statistics: methods must agree on them)."""
    if _ctx is None:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def wrap_ddp(model: nn.Module, device: torch.device, find_unused: bool) -> nn.Module:
    """``DistributedDataParallel`` around ``model`` (broadcasts rank 0's weights now)."""
    from torch.nn.parallel import DistributedDataParallel

    ids = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=ids, find_unused_parameters=find_unused)


def forward_context(model: nn.Module, sync: bool) -> contextlib.AbstractContextManager[Any]:
    """DDP's ``no_sync`` for a forward whose gradients mtldiag averages itself."""
    if not sync and hasattr(model, "no_sync"):
        return model.no_sync()  # type: ignore[operator,no-any-return]
    return contextlib.nullcontext()


# ------------------------------------------------------------------------------ errors


def set_speaker(fn: Callable[[str, str | None, int], None]) -> None:
    """How rank 0 prints another rank's error (the CLI plugs its one-line error printer in)."""
    global _speaker
    _speaker = fn


def _store() -> Any:
    try:
        return dist.distributed_c10d._get_default_store()
    except Exception:  # no store (not initialised, or a torch without it): nothing to share
        return None


def failure(message: str, hint: str | None, code: int, everywhere: bool = False) -> bool:
    """This rank's command failed: return True if this process should print the message.

    Rank 0 (and a single process) prints its own errors. Before the process group exists every
    rank runs the same deterministic code, so other ranks stay quiet. After it, another rank
    publishes its error in the store for rank 0 to print, unless ``everywhere`` (an error every
    rank raises at once, like a non-finite global loss or Ctrl-C). Then it waits for rank 0.
    """
    if is_main():
        return True
    if _ctx is None:
        return False
    _finished.set()
    store = _store()
    if store is not None and not everywhere:
        payload = json.dumps({"rank": _ctx.rank, "message": message, "hint": hint, "code": code})
        with contextlib.suppress(Exception):
            store.compare_set(_ERROR_KEY, "", payload)  # the first error wins
    return False


def finish() -> None:
    """End of a command on this rank: rank 0 says so; the others wait for it before leaving.

    Waiting matters under torchrun: a rank that exits with an error makes torchrun stop the
    others, and rank 0 may still be writing the run directory.
    """
    _finished.set()
    ctx, store = _ctx, _store()
    if ctx is None:
        return
    try:
        if ctx.rank == 0:
            store.set(_DONE_KEY, "1")
        else:
            store.wait([_DONE_KEY], _timeout)
    except Exception:  # rank 0 is gone (its store with it): nothing left to wait for
        pass
    shutdown()


def _watch() -> None:
    """Watchdog thread: stop this process when another rank published an error.

    A rank blocked in a collective with a dead peer would wait for the process group timeout;
    this ends it with the failing rank's message (printed on rank 0) and exit code.
    """
    store = _store()
    if store is None:
        return
    while not _finished.is_set():
        time.sleep(POLL_S)
        try:
            if not store.check([_ERROR_KEY]):
                continue
            raw = store.get(_ERROR_KEY)
        except Exception:
            return  # the store went away: the run is over
        info = json.loads(raw.decode() if isinstance(raw, bytes) else raw)
        # The same error may be on its way here too (a bad spec fails every rank): let it win.
        if _finished.wait(GRACE_S):
            return
        if _ctx is not None and _ctx.rank == 0:
            if _speaker is not None:
                _speaker(
                    f"rank {info['rank']}: {info['message']}", info.get("hint"), int(info["code"])
                )
            with contextlib.suppress(Exception):
                store.set(_DONE_KEY, "1")
        else:
            # Leave only once rank 0 has printed: under torchrun our exit stops the others.
            with contextlib.suppress(Exception):
                store.wait([_DONE_KEY], _dt.timedelta(seconds=30))
        os._exit(int(info["code"]))
