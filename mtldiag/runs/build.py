"""Build what a run needs from the spec: seeded model and loader, optimizer, LR scheduler."""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

from mtldiag.engine import distributed
from mtldiag.errors import MtldiagError, UserCodeError
from mtldiag.runs.imports import resolve
from mtldiag.runs.usercode import user_code_error
from mtldiag.spec import FactorySpec, Spec
from mtldiag.spec.training import construct_optimizer, construct_scheduler


def seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)
    try:
        import numpy as np

        np.random.seed(seed % 2**32)
    except ImportError:  # numpy is optional for mtldiag itself
        pass


def call_factory(ref: FactorySpec, spec: Spec, what: str, **extra: Any) -> Any:
    fn = resolve(ref.factory, spec.base_dir, what=what)
    kwargs = {**ref.kwargs, **extra}
    try:
        return fn(**kwargs)
    except TypeError as exc:
        raise UserCodeError(
            f"{what} '{ref.factory}' rejected its arguments: {exc}",
            hint=f"check {what}.kwargs in the spec",
        ) from exc
    except Exception as exc:  # one line naming the user's frame (my_data.py:12 in build)
        raise user_code_error(
            f"{what} '{ref.factory}'", exc, hint="add --debug to see the traceback"
        ) from exc


def build_model(spec: Spec, seed: int, device: torch.device) -> nn.Module:
    """The user's model, built under ``seed`` so every run starts from the same weights."""
    seed_everything(seed)
    model = call_factory(spec.model, spec, "model")
    if not isinstance(model, nn.Module):
        raise UserCodeError(
            f"model factory '{spec.model.factory}' returned a {type(model).__name__}, "
            "not a torch.nn.Module."
        )
    if not any(p.requires_grad for p in model.parameters()):
        n = sum(1 for _ in model.parameters())
        raise UserCodeError(
            f"model factory '{spec.model.factory}' returned a model with no trainable "
            f"parameter ({n} parameters, all frozen with requires_grad=False): nothing to train.",
            hint="unfreeze at least the shared layers (p.requires_grad_(True))",
        )
    return model.to(device)


def build_loader(spec: Spec, seed: int, ref: FactorySpec | None = None, **extra: Any) -> Any:
    """The user's data loader (any iterable of batches), built under ``seed``.

    Under torchrun the training data (not ``data.val``, which every rank reads whole) is
    sharded: a factory that takes ``rank`` and ``world_size`` gets them, any other loader goes
    through :func:`mtldiag.engine.distributed.shard_loader`.
    """
    ctx = distributed.context() if ref is None else None
    ref = ref or spec.data
    self_sharded = False
    if ctx is not None and distributed.accepts_shard_args(
        resolve(ref.factory, spec.base_dir, what="data")
    ):
        extra = {**extra, "rank": ctx.rank, "world_size": ctx.world_size}
        self_sharded = True
    seed_everything(seed)
    loader = call_factory(ref, spec, "data", **extra)
    if not hasattr(loader, "__iter__"):
        raise UserCodeError(
            f"data factory '{ref.factory}' returned a {type(loader).__name__}, "
            "which is not iterable.",
            hint="return a torch.utils.data.DataLoader or any iterable of batches",
        )
    if ctx is not None and not self_sharded:
        loader = distributed.shard_loader(loader, seed, ref.factory)
    return loader


def build_optimizer(spec: Spec, model: nn.Module) -> torch.optim.Optimizer:
    """The spec's optimizer over ``model``'s trainable parameters, or its factory's.

    A factory ``fn(model, **kwargs)`` may build parameter groups. Methods keep their own
    learned parameters (e.g. Uncertainty's log-variances) out of it: they step them alone.
    """
    ospec = spec.optimizer
    if ospec.factory is None:
        params = [p for p in model.parameters() if p.requires_grad]
        return construct_optimizer(ospec, params)
    ref = FactorySpec(ospec.factory, ospec.kwargs)
    opt = _call_with(ref, spec, "optimizer", model)
    if not isinstance(opt, torch.optim.Optimizer):
        raise UserCodeError(
            f"optimizer factory '{ospec.factory}' returned a {type(opt).__name__}, "
            "not a torch.optim.Optimizer."
        )
    return opt


def build_scheduler(spec: Spec, optimizer: torch.optim.Optimizer) -> Any:
    """The spec's LR scheduler on ``optimizer`` (None without one)."""
    sspec = spec.scheduler
    if sspec is None:
        return None
    if sspec.factory is None:
        return construct_scheduler(sspec, optimizer)
    ref = FactorySpec(sspec.factory, sspec.kwargs)
    sched = _call_with(ref, spec, "scheduler", optimizer)
    if not callable(getattr(sched, "step", None)):
        raise UserCodeError(
            f"scheduler factory '{sspec.factory}' returned a {type(sched).__name__}, "
            "which has no step()."
        )
    return sched


def _call_with(ref: FactorySpec, spec: Spec, what: str, first: Any) -> Any:
    """``fn(first, **kwargs)`` for an optimizer or scheduler factory, errors named."""
    fn = resolve(ref.factory, spec.base_dir, what=what)
    try:
        return fn(first, **ref.kwargs)
    except TypeError as exc:
        raise UserCodeError(
            f"{what} factory '{ref.factory}' rejected its arguments: {exc}",
            hint=f"check {what}.kwargs in the spec",
        ) from exc
    except Exception as exc:
        raise UserCodeError(
            f"{what} factory '{ref.factory}' raised {type(exc).__name__}: {exc}",
            hint="add --debug to see the traceback",
        ) from exc


def move_to(batch: Any, device: torch.device) -> Any:
    """Move every tensor in a (nested) batch to ``device``."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: move_to(v, device) for k, v in batch.items()}
    if isinstance(batch, list | tuple):
        moved = [move_to(v, device) for v in batch]
        return type(batch)(moved) if not hasattr(batch, "_fields") else type(batch)(*moved)
    return batch


class BatchCycle:
    """Endless batches from a finite loader, re-seeding each pass so the order is the same
    for every run with the same seed (whatever the method drew from the global RNG)."""

    def __init__(self, loader: Any, seed: int) -> None:
        self.loader = loader
        self.seed = seed
        self.epoch = 0
        self.drawn = 0  # batches drawn in this pass
        self._it: Iterator[Any] | None = None

    def passes_done(self) -> int:
        """Loader passes finished: a pass ends with its last batch when the loader has a
        length, else when the next batch is asked for."""
        try:
            ended = self.drawn == len(self.loader)
        except TypeError:  # no __len__
            ended = False
        return self.epoch + int(ended)

    def _new_iter(self) -> Iterator[Any]:
        self.drawn = 0
        torch.manual_seed(self.seed * 1_000_003 + self.epoch)
        sampler = getattr(self.loader, "sampler", None)
        if sampler is not None and hasattr(sampler, "set_epoch"):
            sampler.set_epoch(self.epoch)  # DistributedSampler shuffles per epoch
        return iter(self.loader)

    def __next__(self) -> Any:
        try:
            return self._next()
        except (MtldiagError, StopIteration):
            raise
        except Exception as exc:  # the user's loader (or its dataset, its workers) broke
            raise user_code_error(
                f"the data loader (pass {self.epoch + 1})", exc, "check the data factory"
            ) from exc

    def _next(self) -> Any:
        if self._it is None:
            self._it = self._new_iter()
        try:
            batch = next(self._it)
        except StopIteration:
            self.epoch += 1
            self._it = self._new_iter()
            try:
                batch = next(self._it)
            except StopIteration:
                raise UserCodeError(
                    "the data loader is empty: it yielded no batch.",
                    hint="check the data factory (and drop_last with a small data set)",
                ) from None
        self.drawn += 1
        return batch

    def __iter__(self) -> BatchCycle:
        return self
