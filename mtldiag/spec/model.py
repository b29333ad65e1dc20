"""The validated spec as typed, frozen dataclasses (what every run reads)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mtldiag.methods.syntax import MethodSpec

DEFAULT_SPEC = "mtldiag.yaml"
BUILTIN_LOSSES = ("mse", "l1", "smooth_l1", "cross_entropy", "bce_with_logits", "nll")
DEVICES = ("auto", "cpu", "cuda", "mps")
PRECISIONS = ("fp32", "bf16", "fp16")
INTERVALS = ("step", "epoch")
MISSING = ("error", "skip")


@dataclass(frozen=True)
class FactorySpec:
    """A user callable and its keyword arguments."""

    factory: str
    kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class OptimizerSpec:
    """``optimizer:``: a ``torch.optim`` class (``name``, its exact spelling) with keyword
    arguments, or a ``factory`` ``fn(model, **kwargs) -> Optimizer`` (parameter groups)."""

    name: str | None = "Adam"
    kwargs: dict[str, Any] = field(default_factory=lambda: {"lr": 1e-3})
    factory: str | None = None


@dataclass(frozen=True)
class SchedulerSpec:
    """``scheduler:``: a ``torch.optim.lr_scheduler`` class with keyword arguments (a nested
    ``schedulers:`` list holds SchedulerSpecs, for SequentialLR warm-up), or a ``factory``
    ``fn(optimizer, **kwargs) -> scheduler``; stepped every optimizer ``step`` or ``epoch``."""

    name: str | None
    kwargs: dict[str, Any] = field(default_factory=dict)
    factory: str | None = None
    interval: str = "step"


@dataclass(frozen=True)
class TrainSpec:
    """How each optimizer step is taken. The defaults are mtldiag's plain loop."""

    accumulate: int = 1  # micro-batches per optimizer step
    clip_grad_norm: float | None = None  # on the update the method wrote, before the step
    clip_grad_value: float | None = None
    missing: str = "error"  # "skip": tasks form, ignore_index/NaN targets mark a task absent


@dataclass(frozen=True)
class TaskSpec:
    """One task of the ``tasks:`` map. ``output``/``target``/``loss`` are ``None`` when the
    spec computes losses with a ``losses:`` function."""

    name: str
    output: str | int | None = None
    target: str | int | None = None
    loss: str | None = None
    weight: float = 1.0
    higher_is_better: bool = False
    loss_kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ProfileSpec:
    steps: int = 200
    every: int = 1
    method: MethodSpec = field(default_factory=lambda: MethodSpec("ew"))


@dataclass(frozen=True)
class CompareSpec:
    methods: tuple[MethodSpec, ...] = ()
    steps: int | None = None
    seeds: tuple[int, ...] = (0,)
    every: int = 10
    single_task: bool = False
    sweep: int = 0
    jobs: int = 1  # worker processes for the (method, seed) runs (how, not what: not recorded)


@dataclass(frozen=True)
class Spec:
    """A validated spec. ``base_dir`` is where relative paths in it are resolved."""

    name: str
    seed: int
    device: str
    precision: str
    model: FactorySpec
    data: FactorySpec
    val: FactorySpec | None
    tasks: tuple[TaskSpec, ...]
    losses: str | None
    shared: str | tuple[str, ...]
    optimizer: OptimizerSpec
    profile: ProfileSpec
    compare: CompareSpec
    checks: tuple[dict[str, Any], ...]
    eval: str | None
    method_hparams: dict[str, dict[str, Any]]
    raw: dict[str, Any]
    path: Path | None = None
    # The module whose output is the shared representation z (or "auto"): gradient methods and
    # the diagnostics then work on dL_i/dz (mtldiag.engine.representation). None: parameters.
    representation: str | None = None
    log: tuple[str, ...] = ()  # trackers: tensorboard, mlflow, wandb
    scheduler: SchedulerSpec | None = None
    train: TrainSpec = field(default_factory=TrainSpec)

    @property
    def base_dir(self) -> Path:
        return self.path.parent if self.path is not None else Path.cwd()

    @property
    def task_names(self) -> list[str]:
        return [t.name for t in self.tasks]

    def task(self, name: str) -> TaskSpec:
        for t in self.tasks:
            if t.name == name:
                return t
        raise KeyError(name)
