"""Build what a run needs from the spec: device, seeded model and loader, optimizer."""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

from mtldiag.engine import distributed
from mtldiag.errors import MtldiagError, SpecError, UserCodeError, did_you_mean
from mtldiag.runs.imports import resolve
from mtldiag.runs.usercode import user_code_error
from mtldiag.spec import FactorySpec, Spec

_OPTIMIZERS = {
    "sgd": torch.optim.SGD,
    "adam": torch.optim.Adam,
    "adamw": torch.optim.AdamW,
    "rmsprop": torch.optim.RMSprop,
    "adagrad": torch.optim.Adagrad,
}


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
    except Exception as exc:
        raise UserCodeError(
            f"{what} '{ref.factory}' raised {type(exc).__name__}: {exc}",
            hint="add --debug to see the traceback",
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


def build_optimizer(spec: Spec, params: list[torch.Tensor]) -> torch.optim.Optimizer:
    cfg = dict(spec.optimizer)
    name = str(cfg.pop("name")).lower()
    if name not in _OPTIMIZERS:
        raise SpecError(
            f"optimizer '{name}' is not supported.{did_you_mean(name, tuple(_OPTIMIZERS))}",
            hint="use one of " + ", ".join(_OPTIMIZERS),
        )
    if "betas" in cfg and isinstance(cfg["betas"], list):
        cfg["betas"] = tuple(cfg["betas"])
    try:
        return _OPTIMIZERS[name](params, **cfg)
    except (TypeError, ValueError) as exc:
        raise SpecError(f"optimizer '{name}': {exc}", hint="check the optimizer: section") from exc


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
        self._it: Iterator[Any] | None = None

    def _new_iter(self) -> Iterator[Any]:
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
            return next(self._it)
        except StopIteration:
            self.epoch += 1
            self._it = self._new_iter()
            try:
                return next(self._it)
            except StopIteration:
                raise UserCodeError(
                    "the data loader is empty: it yielded no batch.",
                    hint="check the data factory (and drop_last with a small data set)",
                ) from None

    def __iter__(self) -> BatchCycle:
        return self
