"""PyTorch Lightning: profile a LightningModule every K steps, or balance it with any method.

The convention: ``training_step`` returns its total loss and its per-task losses::

    def training_step(self, batch, batch_idx):
        losses = {"seg": ..., "depth": ...}
        return {"loss": sum(losses.values()), "task_losses": losses}

    trainer = L.Trainer(callbacks=[MtldiagCallback(every=10)])

:class:`MtldiagCallback` then writes the usual run directory (``<default_root_dir>/mtldiag``
unless ``out`` is given) and sends the step scalars (``loss/<task>``, ``cosine/<a>-vs-<b>``,
...) to every logger of the Trainer. Lightning back-propagates the total as usual; the
per-task gradients of an instrumented step come from the same graph and never touch
``.grad``.

Balancing (manual optimization): keep a :class:`MethodBackward` on the module and call it
instead of ``manual_backward``; the callback records what it did::

    def __init__(self):
        super().__init__()
        self.automatic_optimization = False
        self.mtl = MethodBackward("pcgrad", every=10)

    def training_step(self, batch, batch_idx):
        opt = self.optimizers()
        opt.zero_grad()
        losses = {...}
        self.mtl.backward(self, losses)        # fills every .grad through PCGrad
        # (self.mtl.backward(self, losses, features=z): on the representation z instead)
        opt.step()
        return {"loss": sum(losses.values()).detach(), "task_losses": losses}

``MethodBackward`` back-propagates with ``torch.autograd`` itself: it suits fp32 or bf16 on one
device; it does not go through Lightning's precision plugin (no fp16 loss scaling) or a
multi-device strategy.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch

from mtldiag import methods
from mtldiag.engine.probe import GradientProbe, ProbeStep
from mtldiag.errors import MtldiagError
from mtldiag.integrations.recorder import LoopProfiler, task_losses
from mtldiag.methods.base import Method


class MethodBackward:
    """Fills every ``.grad`` of a module through an mtldiag method (manual optimization).

    ``method``: a name (``"pcgrad"``, ``"cagrad"``) with ``hparams``, or a method instance.
    One instance per module: stateful methods keep their state from step to step.
    """

    def __init__(
        self,
        method: str | Method = "ew",
        every: int = 10,
        shared: str | Sequence[str] = "auto",
        **hparams: Any,
    ) -> None:
        self.method = methods.create(method, **hparams) if isinstance(method, str) else method
        self.every = every
        self.shared = shared
        self.probe: GradientProbe | None = None
        self.last: ProbeStep | None = None
        self.last_losses: dict[str, torch.Tensor] = {}
        self.on_representation: bool | None = None  # set by the first backward

    def backward(
        self,
        module: torch.nn.Module,
        losses: Mapping[str, torch.Tensor],
        features: torch.Tensor | None = None,
    ) -> ProbeStep:
        """Back-propagate ``losses`` through the method. ``features``: the shared
        representation ``z`` the heads read (not detached), for representation mode (the
        method then works on the gradients w.r.t. ``z``; README, "Representation gradients")."""
        on_z = features is not None
        if self.on_representation is None:
            self.on_representation = on_z
        elif self.on_representation != on_z:
            # One run, one gradient space: its records and summary must not mix them.
            raise MtldiagError(
                "MethodBackward.backward: features= was given on some steps and not others.",
                hint="pass the shared representation on every step, or on none",
            )
        if self.probe is None:
            self.probe = GradientProbe(module, self.shared, self.every, self.method)
        self.last_losses = dict(losses)
        self.last = self.probe.backward(losses, features=features)
        return self.last


class MtldiagCallback(pl.Callback):
    """Profiles the per-task gradients every ``every`` steps (see the module docstring)."""

    def __init__(
        self,
        every: int = 10,
        out: str | Path | None = None,
        shared: str | Sequence[str] = "auto",
        key: str = "task_losses",
    ) -> None:
        self.every, self.out, self.shared, self.key = every, out, shared, key
        self.profiler: LoopProfiler | None = None
        self.summary: dict[str, Any] | None = None
        self._pending: ProbeStep | None = None
        self._t0 = 0.0

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        out = self.out if self.out is not None else Path(trainer.default_root_dir) / "mtldiag"
        self.profiler = LoopProfiler(
            pl_module,
            out,
            self.every,
            self.shared,
            type(pl_module).__name__,
            "lightning",
            source="lightning",
        )
        if pl_module.automatic_optimization:
            # The task gradients need the graph of the step's own losses: take them from the
            # step's output before Lightning back-propagates it (undone in teardown).
            original = pl_module.training_step

            def training_step(*args: Any, **kwargs: Any) -> Any:
                output = original(*args, **kwargs)
                assert self.profiler is not None
                losses = task_losses(output, self.key)
                self._pending = self.profiler.measure(losses, trainer.global_step)
                return output

            pl_module.training_step = training_step  # type: ignore[method-assign]

    def on_train_batch_start(self, trainer: pl.Trainer, *args: Any) -> None:
        self._t0 = time.perf_counter()

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: Any
    ) -> None:
        assert self.profiler is not None
        record = self._pending if pl_module.automatic_optimization else _balanced(pl_module)
        self._pending = None
        if record is None:
            return
        if not pl_module.automatic_optimization and self.profiler.writer is None:
            balancer = _balancer(pl_module)
            assert balancer is not None and balancer.probe is not None
            self.profiler.start(
                balancer.last_losses, balancer.probe.selection, bool(balancer.on_representation)
            )
        self.profiler.record(record, (time.perf_counter() - self._t0) * 1000.0)
        scalars = self.profiler.scalars(record)
        for logger in trainer.loggers:
            logger.log_metrics(scalars, step=record.step)

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.profiler is not None:
            self.summary = self.profiler.finish()

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        pl_module.__dict__.pop("training_step", None)  # the class's own method again
        if self.profiler is not None and self.profiler.writer is not None:
            self.summary = self.profiler.finish("interrupted")


def _balancer(module: torch.nn.Module) -> MethodBackward | None:
    return next((v for v in vars(module).values() if isinstance(v, MethodBackward)), None)


def _balanced(module: torch.nn.Module) -> ProbeStep | None:
    """The step the module's balancer took in this batch (once: a batch without one is None)."""
    balancer = _balancer(module)
    if balancer is None:
        return None
    record, balancer.last = balancer.last, None
    return record
