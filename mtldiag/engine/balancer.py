"""Balancer: any balancing method inside the user's own training loop.

    from mtldiag import methods
    from mtldiag import Balancer

    balancer = Balancer(methods.create("pcgrad"), model.encoder.named_parameters(),
                        other_params=[*model.heads.parameters()])
    for batch in loader:
        optimizer.zero_grad()
        balancer.backward({"seg": seg_loss, "depth": depth_loss})   # fills every .grad
        optimizer.step()

Both run the one step core, :func:`mtldiag.engine.step.backward_step`, as the trainer does.
Gradient methods: one ``torch.autograd.grad`` per task over the shared parameters; the same
calls give the heads their own (unweighted) gradients; the shared ``.grad`` is the method's
direction. Weighting methods: a single backward of ``sum_i w_i L_i`` (plus, for GradNorm, one
partial ``autograd.grad`` per task on the last shared layer for the norms; given ``model=``
and a last shared ``nn.Linear``, the norms in closed form instead: T passes through the heads,
one through the trunk, :mod:`mtldiag.engine.linear_norms`).

    with Balancer(methods.create("gradnorm"), model.encoder.named_parameters(),
                  other_params=[*model.heads.parameters()], model=model) as balancer:
        ...                                   # the loop as above; the hook is removed on exit
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import torch
from torch import nn

from mtldiag.engine.jacobian import JacobianEngine, build_layout
from mtldiag.engine.linear_norms import LinearCapture
from mtldiag.engine.micro import MicroBatches
from mtldiag.engine.step import backward_step, detached_losses, norm_capture, scale_losses
from mtldiag.methods.base import Method, MethodError, RunContext


@dataclass(frozen=True)
class BalanceStep:
    """What one :meth:`Balancer.backward` did."""

    step: int
    losses: list[float]
    weights: list[float] | None  # None for non-Gramian gradient methods (GradDrop)
    warnings: tuple[str, ...] = ()  # the method's warnings so far (e.g. Nash-MTL's solver)
    complete: bool = True  # False: a micro-batch was added; do not step the optimizer yet
    finite: bool = True  # False: inf/NaN gradients under a GradScaler; its step() skips


class Balancer:
    """Wrap a method for a user loop: ``backward(losses)`` fills ``.grad`` of every parameter.

    ``shared_params``: the shared parameters, as ``(name, param)`` pairs (e.g.
    ``encoder.named_parameters()``, layers follow the names) or plain parameters.
    ``other_params``: task-specific parameters (heads). With a gradient method each head gets
    its own plain gradient ``grad L_i`` (from the same T calls that build the Jacobian); with
    a weighting method, ``w_i grad L_i`` (the backward of ``sum_i w_i L_i``).
    ``seed``: seeds the method's random generator (PCGrad, RLW, GradDrop, GradVac).
    The method is ``reset`` on the first call with the task names of that call, in order.

    ``accumulate`` and ``scaler`` work as in :class:`~mtldiag.engine.probe.GradientProbe`:
    K ``backward`` calls per optimizer step (step when the result is ``complete``), and a
    ``torch.amp.GradScaler`` whose ``step``/``update`` the loop calls as usual. Clipping is
    left to the loop (``scaler.unscale_(optimizer)`` first).

    ``model``: the whole model the losses are computed with (the module ``shared_params`` and
    ``other_params`` come from, e.g. ``model`` for ``model.encoder.named_parameters()``). Only
    GradNorm-like methods use it: when the last shared layer is exactly an ``nn.Linear`` of
    ``model`` and every trainable parameter of ``model`` is shared or in ``other_params``, a
    forward hook on that layer lets each plain step take the T norms in closed form (about
    1.2x a plain step instead of 1.35x; the same ``.grad`` bit for bit, the same norms to
    float rounding). The model, rather than the layer, because the rule needs it: the layer is
    found by the identity of the last shared parameters (names from ``encoder.named_parameters()``
    are relative to the encoder), and the check that no trainable parameter would be missed
    by the head passes reads all of the model's. A step where the closed form would not be
    exact (a skip connection around the layer, an in-place op on its output, torchrun) takes
    the partial passes as without ``model``. The hook lives until :meth:`close` (or the end
    of a ``with Balancer(...)`` block).
    """

    def __init__(
        self,
        method: Method,
        shared_params: Iterable[torch.Tensor] | Iterable[tuple[str, torch.Tensor]],
        other_params: Iterable[torch.Tensor] = (),
        seed: int = 0,
        total_steps: int | None = None,
        *,
        accumulate: int = 1,
        scaler: torch.amp.GradScaler | None = None,
        model: nn.Module | None = None,
    ) -> None:
        items = list(shared_params)
        named = [it if isinstance(it, tuple) else (f"shared.{k}", it) for k, it in enumerate(items)]
        named = [(n, p) for n, p in named if p.requires_grad]
        if not named:
            raise MethodError("Balancer needs at least one shared parameter that requires grad.")
        self.method = method
        self.layout = build_layout(named)
        self.engine = JacobianEngine(self.layout, list(other_params))
        self.seed = seed
        self.total_steps = total_steps
        self.tasks: list[str] | None = None
        self.step = 0
        self.micro = MicroBatches(accumulate) if accumulate != 1 else None
        self.scaler = scaler
        # GradNorm-like methods on a last shared nn.Linear of ``model``: its input and output
        # each forward, for the closed-form norms (the probe's rule, mtldiag.engine.step).
        self.capture: LinearCapture | None = norm_capture(
            method, model, self.layout, self.engine.others
        )

    def close(self) -> None:
        """Remove the norms' forward hook (if any) and drop the Jacobian buffer."""
        if self.capture is not None:
            self.capture.remove()
            self.capture = None
        self.engine._buffer = None

    def __enter__(self) -> Balancer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _setup(self, losses: Mapping[str, torch.Tensor]) -> None:
        self.tasks = list(losses)
        first = next(iter(losses.values()))
        ctx = RunContext(
            tasks=tuple(self.tasks),
            seed=self.seed,
            total_steps=self.total_steps,
            device=first.device,
            layer_sizes=tuple(self.layout.layer_sizes),
            dtype=self.layout.params[0].dtype,
        )
        self.method.reset(ctx)

    def backward(
        self, losses: Mapping[str, torch.Tensor], features: torch.Tensor | None = None
    ) -> BalanceStep:
        """Back-propagate ``losses`` ({task: scalar}) through the method; fill ``.grad``.

        ``features``: the shared representation ``z`` the heads read (the trunk's output, not
        detached). A gradient method then works on the T gradients w.r.t. ``z`` (T backward
        passes through the heads, one through the trunk: MGDA-UB, LibMTL's ``rep_grad``).
        """
        if self.tasks is None:
            self._setup(losses)
        assert self.tasks is not None
        if list(losses) != self.tasks:
            raise MethodError(
                f"Balancer.backward: expected the tasks {self.tasks} in this order, got "
                f"{list(losses)}."
            )
        step = self.step
        ordered = [losses[t].reshape(()) for t in self.tasks]
        detached = detached_losses(ordered)
        ordered, loss_scale = scale_losses(self.scaler, ordered)
        # A weighting method's step is one backward of sum_i w_i L_i (no per-task pass).
        result = backward_step(
            self.engine,
            self.method,
            ordered,
            detached,
            step,
            per_task=False,
            loss_scale=loss_scale,
            micro=self.micro,
            features=features,
            capture=self.capture,
        )
        if not result.complete:
            return BalanceStep(step, detached.tolist(), None, complete=False)
        self.step += 1
        w = result.weights
        w_list = None if w is None else w.double().cpu().tolist()
        assert result.losses is not None
        warnings = tuple(self.method.warnings)
        return BalanceStep(step, result.losses.tolist(), w_list, warnings, finite=result.finite)
