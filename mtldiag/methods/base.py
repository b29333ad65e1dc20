"""The contract every balancing method follows.

Two families share one registry:

* :class:`WeightingMethod` turns the task losses (and its own state) into a weight vector
  ``w`` (T,). The trainer then back-propagates ``sum_i w_i L_i`` once, or, on a step where the
  Jacobian ``J`` (T x P) is already computed, uses ``w @ J`` with no further backward pass.
* :class:`GradientMethod` turns the Jacobian of the task losses over the *shared* parameters
  into one update direction ``d`` (P,). Task-specific parameters (heads) get their own plain
  gradients. Most gradient methods are really "weights from the Gramian ``G = J J^T``"; those
  subclass :class:`GramianMethod` and only write :meth:`GramianMethod.weights_from_gramian`.

Scale convention: a direction is on the scale of the *sum* of the task gradients (EW gives
``d = sum_i g_i``). Methods whose paper uses the mean document it and expose it as an option.

Stateful methods keep their state on the instance; :meth:`Method.reset` clears it and the
trainer always calls it (with a fresh :class:`RunContext`) before a run, so compared runs never
leak state into each other.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import torch

from mtldiag.engine.gramian import small_gram
from mtldiag.errors import MtldiagError

Family = Literal["weighting", "gradient"]


class MethodError(MtldiagError, ValueError):
    """A method was asked for by a wrong name or with a wrong hyper-parameter.

    Also raised by :meth:`Method.reset` when the run cannot feed the method what it needs
    (``fixed`` weights for other tasks, ``prior_loss`` without prior losses).
    """


@dataclass(frozen=True)
class TaskStats:
    """What the trainer knows about one task before training (may be partly ``None``).

    ``prior_loss``: loss of the best constant ("prior") predictor, from a pass over the labels
    (class-frequency entropy for cross-entropy, label variance for MSE, ...).
    ``theory_initial_loss``: the loss an untrained model should start near
    (``log K`` for K-class cross-entropy, ``E[y^2]`` for MSE with a zero-output model, ...).
    ``loss``: the built-in loss name when the spec's ``tasks:`` form is used, else ``None``.
    """

    prior_loss: float | None = None
    theory_initial_loss: float | None = None
    loss: str | None = None


@dataclass(frozen=True)
class RunContext:
    """Everything a method may need to know about the run it is about to take part in."""

    tasks: Sequence[str]
    seed: int = 0
    total_steps: int | None = None
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    task_stats: Mapping[str, TaskStats] = field(default_factory=dict)
    # Sizes of the shared-parameter layers in the flattened order of the Jacobian's columns;
    # layer-wise methods (GradVac, GradDrop options) may use it. Empty means "one block".
    layer_sizes: Sequence[int] = ()
    # The dtype the task gradients are computed in (the model's parameters). Gramian methods
    # take their rank decisions at this precision even when handed a float64 Gramian formed
    # from float32 gradients; ``None``: the Gramian's own dtype.
    dtype: torch.dtype | None = None
    # Hyper-parameter values given by the user per task (e.g. ``fixed`` weights, ``anneal``
    # schedules) are passed to the method's constructor, not here.

    @property
    def n_tasks(self) -> int:
        return len(self.tasks)


@dataclass(frozen=True)
class HyperParam:
    """One hyper-parameter as listed by ``mtldiag methods``."""

    name: str
    default: Any
    help: str
    required: bool = False  # no default: the method cannot run without it (fixed's weights)


class Method:
    """Base of every balancing method.

    Subclasses set the class attributes below, take their hyper-parameters as keyword
    arguments of ``__init__`` (defaults from the paper; validated there with one clear
    sentence on error, raising :class:`MethodError`), and keep any state on the instance.
    """

    name: ClassVar[str] = ""
    aliases: ClassVar[tuple[str, ...]] = ()
    family: ClassVar[Family]
    paper: ClassVar[str] = ""
    stateful: ClassVar[bool] = False
    # A gradient method whose state is indexed by task or pair (GradVac's targets, Nash-MTL's
    # last weights) cannot run a step on a subset of the tasks (a task without labels).
    keeps_task_state: ClassVar[bool] = False
    # 1: the step core back-propagates one task's loss per step, that of
    # ``task_of_step(step)``, and hands the method its flat gradient (``task_direction``):
    # M-ConFIG (mtldiag.engine.alternating). None: every task's loss each step.
    tasks_per_step: ClassVar[int | None] = None
    # The hyper-parameters ``__init__`` takes, with their defaults (listed by `mtldiag methods`;
    # ``hyperparams()`` reads the current values from the attributes of the same names).
    params: ClassVar[tuple[HyperParam, ...]] = ()

    def reset(self, ctx: RunContext) -> None:
        """Forget all state and prepare for a run over ``ctx.tasks``. Always called first."""
        self.ctx = ctx
        self.__dict__["_warnings"] = []

    def hyperparams(self) -> dict[str, Any]:
        """The hyper-parameters as given to ``__init__`` (used by ``__repr__`` and records)."""
        return {p.name: getattr(self, p.name) for p in self.params}

    @property
    def warnings(self) -> list[str]:
        """Problems met during the run so far (e.g. a solver that did not converge).

        Empty for most methods; the trainer may record them. Cleared by :meth:`reset`.
        """
        return self.__dict__.setdefault("_warnings", [])

    def _warn(self, message: str) -> None:
        self.warnings.append(message)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.hyperparams().items())
        return f"{type(self).__name__}({args})"

    def __str__(self) -> str:
        return self.name


class WeightingMethod(Method):
    """Weights from the losses: the trainer back-propagates ``sum_i w_i L_i``."""

    family: ClassVar[Family] = "weighting"
    # GradNorm needs each task's gradient norm on the last shared layer every step; the
    # trainer computes them (T extra partial backward passes) only when this is True.
    needs_grad_norms: ClassVar[bool] = False
    # Where those norms are taken: "last" = the last shared layer (GradNorm's default W),
    # "all" = every shared parameter. An instance attribute may override it.
    grad_norm_layer: str = "last"

    def weights(self, losses: torch.Tensor, step: int) -> torch.Tensor:
        """Return the (T,) weights for this step's losses (``losses`` is detached, float)."""
        raise NotImplementedError

    def update(
        self,
        losses: torch.Tensor,
        step: int,
        grad_norms: torch.Tensor | None = None,
    ) -> None:
        """Update learned state after the step's backward pass (default: nothing).

        ``grad_norms`` (T,) holds ``||grad_W L_i||`` on the last shared layer (unweighted)
        when :attr:`needs_grad_norms` is set.
        """


class GradientMethod(Method):
    """An update direction for the shared parameters from the Jacobian ``J`` (T x P)."""

    family: ClassVar[Family] = "gradient"

    def aggregate(self, jacobian: torch.Tensor, losses: torch.Tensor | None = None) -> torch.Tensor:
        """Return the (P,) update direction (sum convention) for ``jacobian`` (T x P)."""
        raise NotImplementedError


class GramianMethod(GradientMethod):
    """A gradient method whose direction is ``w @ J`` with ``w`` a function of ``G = J J^T``.

    The trainer computes ``G`` once per step (it needs it for the diagnosis anyway) and calls
    :meth:`weights_from_gramian`; :meth:`aggregate` is the stand-alone path for user code.
    """

    def weights_from_gramian(
        self, gramian: torch.Tensor, losses: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Return the (T,) weights ``w`` such that the direction is ``w @ J``."""
        raise NotImplementedError

    def precision(self, gramian: torch.Tensor) -> torch.dtype:
        """The precision ``gramian`` was formed in: the coarser of its dtype and the run's."""
        ctx = getattr(self, "ctx", None)
        run = getattr(ctx, "dtype", None)
        if run is None or not run.is_floating_point:
            return gramian.dtype
        if torch.finfo(run).eps > torch.finfo(gramian.dtype).eps:
            return run
        return gramian.dtype

    def aggregate(self, jacobian: torch.Tensor, losses: torch.Tensor | None = None) -> torch.Tensor:
        gramian = small_gram(jacobian)  # chunked: faster than a plain T x P GEMM
        w = self.weights_from_gramian(gramian, losses)
        return w.to(jacobian.dtype) @ jacobian
