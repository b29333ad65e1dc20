"""Representation gradients (Sener & Koltun 2018, MGDA-UB; LibMTL's ``rep_grad``).

Instead of each task's gradient over the shared *parameters* (T backward passes through the
whole trunk), take each task's gradient over the shared *representation* ``z`` (the trunk's
output): T backward passes through the heads only. The method combines them into one ``dz``;
one backward of ``z`` with ``dz`` then fills the trunk's ``.grad``. Per step that is one trunk
backward, as a plain summed-loss step.

What it trades: the Gramian is that of the T representation gradients (batch and feature
dimensions flattened), not of the parameter gradients. For a weighting method the trunk update
is exactly the same (the chain rule is linear); a gradient method solves its problem in another
geometry (MGDA-UB's is an upper bound of the parameter-space objective), and every cosine,
norm and conflict reported is a representation-space number.

:class:`RepresentationEngine` stands in for :class:`~mtldiag.engine.jacobian.JacobianEngine` in
the one step core (:func:`mtldiag.engine.step.backward_step` with ``features=z``): its
``compute`` returns the T x (B*F) matrix of representation gradients, its ``write_direction``
back-propagates ``dz`` through the trunk. Every parameter upstream of ``z`` should be shared.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from mtldiag.engine.jacobian import JacobianEngine, SharedLayout
from mtldiag.errors import SpecError
from mtldiag.methods.syntax import WRT

REPRESENTATION_LAYER = "representation"  # the one "layer" of representation-space metrics


class RepresentationEngine:
    """Per-task gradients with respect to ``features`` (``z``), heads' gradients on the way."""

    def __init__(
        self,
        features: torch.Tensor,
        others: Sequence[torch.Tensor] = (),
        name: str = REPRESENTATION_LAYER,
    ) -> None:
        if not features.requires_grad:
            raise ValueError("Parameter `features` should require grad (the trunk's output).")
        self.features = features
        self.others = [p for p in others if p.requires_grad]
        n = features.numel()
        # One pseudo-layer, the representation: metrics keep their (whole, per layer) shape.
        self.layout = SharedLayout((name,), (), (0, n), {name: slice(0, n)})

    def compute(
        self,
        losses: Sequence[torch.Tensor],
        head_weights: Sequence[float] | torch.Tensor | None = None,
    ) -> torch.Tensor:
        """(T, B*F) float32: row i is ``dL_i/dz`` flattened; heads get ``sum_i w_i grad L_i``.

        The graph is kept: :meth:`write_direction` back-propagates through the trunk after.
        """
        z = self.features
        rows = []
        for i, loss in enumerate(losses):
            grads = torch.autograd.grad(
                loss, [z, *self.others], retain_graph=True, allow_unused=True
            )
            dz = grads[0]
            rows.append(torch.zeros(z.numel(), device=z.device) if dz is None else dz.reshape(-1))
            w = 1.0 if head_weights is None else float(head_weights[i])
            JacobianEngine._accumulate_heads(self.others, grads[1:], w)
        return torch.stack(rows).float()  # (T, B*F)

    def write_direction(self, direction: torch.Tensor) -> None:
        """One backward through the trunk of the combined ``dz``: fills the trunk's ``.grad``."""
        z = self.features
        z.backward(direction.reshape(z.shape).to(z.dtype))


class RepresentationHook:
    """Captures the output of one module on every forward (a removable forward hook).

    Use as a context manager: the hook is removed on exit, so it never outlives the run.
    """

    def __init__(self, model: nn.Module, name: str) -> None:
        self.module = find_module(model, name)
        self.name = name
        self.output: torch.Tensor | None = None
        self._handle: Any = None

    def _hook(self, module: nn.Module, inputs: Any, output: Any) -> None:
        if not isinstance(output, torch.Tensor):
            raise SpecError(
                f"representation '{self.name}' returns a {type(output).__name__}, not a tensor.",
                hint="name the module whose output is the shared features (a tensor)",
            )
        self.output = output

    def __enter__(self) -> RepresentationHook:
        self._handle = self.module.register_forward_hook(self._hook)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._handle is not None:
            self._handle.remove()
            self._handle = None
        self.output = None


def choose_representation(
    model: nn.Module, shared_names: Sequence[str], setting: str | None, wrt: str | None
) -> str | None:
    """The module whose output is ``z``, or ``None`` for parameter mode.

    ``setting``: the spec's ``representation:`` (a module name, ``auto`` or ``None``); ``wrt``:
    ``--wrt`` (``parameters`` overrides the spec, ``representation`` without a spec setting
    means ``auto``).
    """
    if default_space(setting, wrt) == "parameters":
        return None
    name = setting or "auto"
    if name == "auto":
        return auto_representation(model, shared_names)
    find_module(model, name)
    return name


def default_space(setting: str | None, wrt: str | None) -> str:
    """The gradient space of a run whose method names none: ``wrt`` (``--wrt``), else
    ``representation`` when the spec sets ``representation:`` (``setting``), else parameters."""
    if wrt is not None and wrt not in WRT:
        raise SpecError(f"--wrt '{wrt}' is not one of: {', '.join(WRT)}.")
    if wrt == "parameters" or (wrt is None and setting is None):
        return "parameters"
    return "representation"


def space_of(representation: str | bool | None) -> str:
    """A run's gradient space from its representation module (``None``/``False``: none)."""
    return "representation" if representation else "parameters"


def metric_layers(representation: str | None, parameter_layers: Sequence[str]) -> list[str]:
    """The layers a run's metrics have: the shared layers, or the one representation."""
    return [REPRESENTATION_LAYER] if representation else list(parameter_layers)


def find_module(model: nn.Module, name: str) -> nn.Module:
    modules = dict(model.named_modules())
    if name in modules and name != "":
        return modules[name]
    sample = ", ".join(n for n in list(modules)[1:8])
    raise SpecError(
        f"representation '{name}' is not a module of the model.",
        hint=f"name one of its modules ({sample}, ...) or use representation: auto",
    )


def auto_representation(model: nn.Module, shared_names: Sequence[str]) -> str:
    """The innermost module holding every shared parameter: its output is what the heads share.

    Refused when only the whole model holds them (then no one module's output is ``z``).
    """
    shared = set(shared_names)
    best: tuple[int, str] | None = None
    for name, module in model.named_modules():
        if not name:
            continue
        own = {f"{name}.{n}" for n, _ in module.named_parameters()}
        if shared <= own and (best is None or len(own) < best[0]):
            best = (len(own), name)
    if best is None:
        raise SpecError(
            "representation: auto found no module that holds every shared parameter (the trunk).",
            hint="wrap the shared layers in one module, or name it: representation: <module>",
        )
    return best[1]
