"""Balancer: any balancing method inside the user's own training loop.

    from mtldiag import methods
    from mtldiag.engine.balancer import Balancer

    balancer = Balancer(methods.create("pcgrad"), model.encoder.named_parameters(),
                        other_params=[*model.heads.parameters()])
    for batch in loader:
        optimizer.zero_grad()
        balancer.backward({"seg": seg_loss, "depth": depth_loss})   # fills every .grad
        optimizer.step()

Gradient methods: the Jacobian over the shared parameters is computed with one
``torch.autograd.grad`` per task (:class:`~mtldiag.engine.jacobian.JacobianEngine`); the same calls
give the heads their own (unweighted) gradients; the shared ``.grad`` is the method's
direction.
Weighting methods: a single backward of ``sum_i w_i L_i`` (plus, for GradNorm, one partial
``autograd.grad`` per task on the last shared layer for the norms).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import torch

from mtldiag.engine.gramian import stacked_gramians_from_grads
from mtldiag.engine.jacobian import JacobianEngine, build_layout
from mtldiag.methods.base import GramianMethod, Method, MethodError, RunContext, WeightingMethod


@dataclass(frozen=True)
class BalanceStep:
    """What one :meth:`Balancer.backward` did."""

    step: int
    losses: list[float]
    weights: list[float] | None  # None for non-Gramian gradient methods (GradDrop)
    warnings: tuple[str, ...] = ()  # the method's warnings so far (e.g. Nash-MTL's solver)


class Balancer:
    """Wrap a method for a user loop: ``backward(losses)`` fills ``.grad`` of every parameter.

    ``shared_params``: the shared parameters, as ``(name, param)`` pairs (e.g.
    ``encoder.named_parameters()``, layers follow the names) or plain parameters.
    ``other_params``: task-specific parameters (heads). With a gradient method each head gets
    its own plain gradient ``grad L_i`` (from the same T calls that build the Jacobian); with
    a weighting method, ``w_i grad L_i`` (the backward of ``sum_i w_i L_i``).
    ``seed``: seeds the method's random generator (PCGrad, RLW, GradDrop, GradVac).
    The method is ``reset`` on the first call with the task names of that call, in order.
    """

    def __init__(
        self,
        method: Method,
        shared_params: Iterable[torch.Tensor] | Iterable[tuple[str, torch.Tensor]],
        other_params: Iterable[torch.Tensor] = (),
        seed: int = 0,
        total_steps: int | None = None,
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

    def _setup(self, losses: Mapping[str, torch.Tensor]) -> None:
        self.tasks = list(losses)
        first = next(iter(losses.values()))
        ctx = RunContext(
            tasks=tuple(self.tasks),
            seed=self.seed,
            total_steps=self.total_steps,
            device=first.device,
            layer_sizes=tuple(self.layout.layer_sizes),
        )
        self.method.reset(ctx)

    def backward(self, losses: Mapping[str, torch.Tensor]) -> BalanceStep:
        """Back-propagate ``losses`` ({task: scalar}) through the method; fill ``.grad``."""
        if self.tasks is None:
            self._setup(losses)
        assert self.tasks is not None
        if list(losses) != self.tasks:
            raise MethodError(
                f"Balancer.backward: expected the tasks {self.tasks} in this order, got "
                f"{list(losses)}."
            )
        step = self.step
        self.step += 1
        ordered = [losses[t].reshape(()) for t in self.tasks]
        detached = torch.stack([loss.detach().float() for loss in ordered])
        m = self.method
        weights: torch.Tensor | None = None
        if isinstance(m, WeightingMethod):
            weights = m.weights(detached, step)
            norms = self._grad_norms(ordered, m.grad_norm_layer) if m.needs_grad_norms else None
            total = (weights.to(ordered[0]) * torch.stack(ordered)).sum()
            total.backward()
            m.update(detached, step, norms)
        else:
            # One autograd.grad per task gives J and, in the same calls, each head its own
            # plain gradient (as the trainer does): no second backward, no retained graph.
            if isinstance(m, GramianMethod):
                # No J: G from the T gradient lists (one dot per parameter and pair), the
                # direction summed in place into them, as a plain multi-pass update would.
                grads = self.engine.task_grads(ordered)
                gram = stacked_gramians_from_grads(grads, self.layout)[0]
                weights = m.weights_from_gramian(gram, detached)
                self.engine.combine_into_grads(grads, weights)
            else:
                jac = self.engine.compute(ordered)
                direction = m.aggregate(jac, detached)
                if direction.untyped_storage().data_ptr() == jac.untyped_storage().data_ptr():
                    direction = direction.clone()  # a view of J's buffer, reused next step
                self.engine.write_direction(direction)
        w_list = None if weights is None else weights.double().cpu().tolist()
        return BalanceStep(step, detached.tolist(), w_list, tuple(m.warnings))

    def _grad_norms(self, ordered: list[torch.Tensor], where: str) -> torch.Tensor:
        """Each task's unweighted gradient norm on the last shared layer (or all shared)."""
        layout = self.layout
        if where == "all":
            params = list(layout.params)
        else:
            last = list(layout.layer_slices.values())[-1]
            params = [
                p
                for k, p in enumerate(layout.params)
                if layout.offsets[k] >= last.start and layout.offsets[k + 1] <= last.stop
            ]
        out = []
        for loss in ordered:
            grads = torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True)
            norms = [torch.linalg.vector_norm(g) for g in grads if g is not None]
            out.append(
                torch.linalg.vector_norm(torch.stack(norms)) if norms else loss.new_zeros(())
            )
        return torch.stack(out).detach().float().cpu()  # one host transfer for all T
