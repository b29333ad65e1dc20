"""Hugging Face ``Trainer``: per-task losses from the model output, profiled every K steps,
optionally balanced with any mtldiag method.

The convention: the model's output has a ``task_losses`` dict (``{task: scalar}``) next to
its ``loss``, or ``task_losses_fn(model, inputs, outputs) -> {task: loss}`` computes them::

    class MyTrainer(MtldiagTrainerMixin, Trainer):
        pass

    trainer = MyTrainer(model=model, args=args, train_dataset=ds,
                        mtl_every=10, mtl_method="pcgrad")   # mtl_method: None = the loss as is
    trainer.train()            # run directory: <output_dir>/mtldiag (or mtl_out)

Every K-th step the task gradients over the shared parameters are measured on the step's own
graph, written to the run directory and sent through ``Trainer.log`` (so to every
``report_to`` integration). With ``mtl_method`` the mixin's ``training_step`` fills ``.grad``
through the method instead of back-propagating the sum; that path runs on one device
without fp16 loss scaling and with ``gradient_accumulation_steps=1``.
:class:`MtldiagCallback` is the ``TrainerCallback`` that times steps and writes the summary
and report at the end; the mixin adds it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from transformers import TrainerCallback

from mtldiag import methods
from mtldiag.engine.probe import GradientProbe, ProbeStep
from mtldiag.engine.representation import RepresentationHook
from mtldiag.errors import MtldiagError
from mtldiag.integrations.recorder import LoopProfiler, task_losses

TaskLossFn = Callable[[torch.nn.Module, Mapping[str, Any], Any], Mapping[str, torch.Tensor]]


class MtldiagCallback(TrainerCallback):
    """Times each step, writes its row to the run directory, closes it at the end of training."""

    def __init__(self, profiler: LoopProfiler, hook: RepresentationHook | None = None) -> None:
        self.profiler = profiler
        self.hook = hook  # mtl_representation's forward hook, removed when training ends
        self.pending: ProbeStep | None = None
        self.summary: dict[str, Any] | None = None
        self._t0 = 0.0

    def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._t0 = time.perf_counter()

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.pending is not None:
            self.profiler.record(self.pending, (time.perf_counter() - self._t0) * 1000.0)
            self.pending = None

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.hook is not None:
            self.hook.__exit__(None, None, None)
        self.summary = self.profiler.finish()


class MtldiagTrainerMixin:
    """Put before ``Trainer`` in the bases (``class T(MtldiagTrainerMixin, Trainer)``).

    ``mtl_every``: instrument every K-th step; ``mtl_out``: run directory (default
    ``<output_dir>/mtldiag``); ``mtl_method``: a method name (``mtl_hparams`` its
    hyper-parameters) to balance with, ``None`` to train on the model's own loss;
    ``task_losses_fn``: where the per-task losses come from when the output has none.
    ``mtl_representation``: with ``mtl_method``, the name of the module whose output is the
    shared representation ``z`` the heads read (``"bert.pooler"``): the method then works on
    the gradients w.r.t. ``z``, T passes through the heads and one through the trunk
    (representation mode, README "Representation gradients").
    """

    def __init__(
        self,
        *args: Any,
        mtl_every: int = 10,
        mtl_out: str | Path | None = None,
        mtl_method: str | None = None,
        mtl_hparams: Mapping[str, Any] | None = None,
        mtl_shared: str | Sequence[str] = "auto",
        task_losses_fn: TaskLossFn | None = None,
        mtl_representation: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        trainer: Any = self
        if mtl_representation is not None and mtl_method is None:
            raise MtldiagError(
                "mtl_representation needs mtl_method: it sets the space the method works in.",
                hint="add mtl_method='mgda' (or another method), or drop mtl_representation",
            )
        # Checked (the module must exist) before anything is written.
        hook = (
            RepresentationHook(trainer.model, mtl_representation).__enter__()
            if mtl_representation is not None
            else None
        )
        self.mtl_hook = hook
        out = mtl_out if mtl_out is not None else Path(trainer.args.output_dir) / "mtldiag"
        label = mtl_method or "transformers"
        profiler = LoopProfiler(
            trainer.model,
            out,
            mtl_every,
            mtl_shared,
            type(trainer.model).__name__,
            label,
            source="transformers",
        )
        self.mtl_callback = MtldiagCallback(profiler, hook)
        trainer.add_callback(self.mtl_callback)
        self.task_losses_fn = task_losses_fn
        self.mtl_probe: GradientProbe | None = None
        if mtl_method is not None:
            if trainer.args.gradient_accumulation_steps != 1:
                raise MtldiagError(
                    "mtl_method balances each batch's own gradients: "
                    "gradient_accumulation_steps must be 1.",
                    hint="raise the batch size instead, or train without mtl_method",
                )
            method = methods.create(mtl_method, **dict(mtl_hparams or {}))
            self.mtl_probe = GradientProbe(trainer.model, mtl_shared, mtl_every, method)

    def _task_losses(self, model: Any, inputs: Any, outputs: Any) -> dict[str, torch.Tensor]:
        if self.task_losses_fn is not None:
            return dict(self.task_losses_fn(model, inputs, outputs))
        return task_losses(outputs)

    def compute_loss(
        self, model: Any, inputs: Any, return_outputs: bool = False, **kwargs: Any
    ) -> Any:
        """The model's ``loss`` (else the sum of the task losses); an instrumented training
        step measures the task gradients first."""
        outputs = model(**inputs)
        losses = self._task_losses(model, inputs, outputs)
        trainer: Any = self
        if model.training and self.mtl_probe is None:
            record = self.mtl_callback.profiler.measure(losses, trainer.state.global_step)
            self._mtl_log(record)
        loss = (
            outputs.get("loss") if isinstance(outputs, Mapping) else getattr(outputs, "loss", None)
        )
        if loss is None:
            loss = torch.stack([v.reshape(()) for v in losses.values()]).sum()
        return (loss, outputs) if return_outputs else loss

    def training_step(self, model: Any, inputs: Any, *args: Any, **kwargs: Any) -> torch.Tensor:
        """With ``mtl_method``: ``.grad`` from the method (the Trainer then steps as usual)."""
        if self.mtl_probe is None:
            return super().training_step(model, inputs, *args, **kwargs)  # type: ignore[misc]
        trainer: Any = self
        model.train()
        inputs = trainer._prepare_inputs(inputs)
        losses = self._task_losses(model, inputs, model(**inputs))
        features = self.mtl_hook.output if self.mtl_hook is not None else None
        record = self.mtl_probe.backward(losses, features=features)  # fills every .grad
        profiler = self.mtl_callback.profiler
        if profiler.writer is None:
            profiler.start(losses, self.mtl_probe.selection, self.mtl_hook is not None)
        self._mtl_log(record)
        return torch.stack([v.detach().reshape(()) for v in losses.values()]).sum()

    def _mtl_log(self, record: ProbeStep) -> None:
        self.mtl_callback.pending = record
        if record.instrumented:
            trainer: Any = self
            trainer.log(self.mtl_callback.profiler.scalars(record))
