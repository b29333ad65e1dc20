"""Per-task gradients over the shared parameters: the Jacobian ``J`` (T x P) and its Gramians.

Everything mtldiag reports is a function of ``J``: norms are ``sqrt(G_ii)``, cosines
``G_ij / (n_i n_j)``, conflicts ``G_ij < 0``. Columns of ``J`` are laid out layer by layer, so a
layer's Gramian is ``J[:, s] J[:, s]^T`` for its column slice ``s`` and the layer Gramians sum
to the whole one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class SharedLayout:
    """Where each shared parameter sits in the columns of the Jacobian.

    ``names``/``params`` are in column order; parameters of one layer (the module that owns
    them, named as in ``model.named_modules()``) are contiguous; ``layer_slices`` maps a layer
    name to its column range.
    """

    names: tuple[str, ...]
    params: tuple[torch.Tensor, ...]
    offsets: tuple[int, ...]
    layer_slices: dict[str, slice]

    @property
    def numel(self) -> int:
        return self.offsets[-1] if self.offsets else 0

    @property
    def layers(self) -> list[str]:
        return list(self.layer_slices)

    @property
    def layer_sizes(self) -> list[int]:
        return [s.stop - s.start for s in self.layer_slices.values()]


def layer_of(param_name: str) -> str:
    """The owning module of a parameter: ``encoder.0.weight`` -> ``encoder.0``."""
    head, _, _ = param_name.rpartition(".")
    return head or "<root>"


def build_layout(named_params: Sequence[tuple[str, torch.Tensor]]) -> SharedLayout:
    """Order the given shared parameters layer by layer (first appearance order)."""
    by_layer: dict[str, list[tuple[str, torch.Tensor]]] = {}
    for name, p in named_params:
        by_layer.setdefault(layer_of(name), []).append((name, p))
    names: list[str] = []
    params: list[torch.Tensor] = []
    offsets = [0]
    slices: dict[str, slice] = {}
    for layer, items in by_layer.items():
        start = offsets[-1]
        for name, p in items:
            names.append(name)
            params.append(p)
            offsets.append(offsets[-1] + p.numel())
        slices[layer] = slice(start, offsets[-1])
    return SharedLayout(tuple(names), tuple(params), tuple(offsets), slices)


class JacobianEngine:
    """Computes ``J`` with one ``torch.autograd.grad`` call per task and no other backward.

    The same calls also return the gradients of the non-shared parameters (task heads), which
    are accumulated into their ``.grad`` with per-task weights, so a training step needs no
    extra backward pass for the heads.
    """

    def __init__(self, layout: SharedLayout, others: Sequence[torch.Tensor] = ()) -> None:
        self.layout = layout
        self.others = [p for p in others if p.requires_grad]
        self._buffer: torch.Tensor | None = None

    def _jacobian_buffer(self, n_tasks: int, like: torch.Tensor) -> torch.Tensor:
        buf = self._buffer
        if buf is None or buf.shape[0] != n_tasks or buf.device != like.device:
            buf = torch.empty(n_tasks, self.layout.numel, device=like.device, dtype=torch.float32)
            self._buffer = buf
        return buf

    def compute(
        self,
        losses: Sequence[torch.Tensor],
        head_weights: Sequence[float] | torch.Tensor | None = None,
        accumulate_heads: bool = True,
        retain_graph: bool = False,
    ) -> torch.Tensor:
        """Return ``J`` (T x P, float32) for ``losses``; heads get ``sum_i w_i grad L_i``.

        The returned tensor is a buffer reused by the next call: copy it to keep it.
        A task that does not reach a shared parameter has zeros there.
        """
        shared = list(self.layout.params)
        others = self.others if accumulate_heads else []
        inputs = shared + others
        n = len(losses)
        jac = self._jacobian_buffer(n, losses[0])
        offsets = self.layout.offsets
        for i, loss in enumerate(losses):
            keep = retain_graph or i < n - 1
            grads = torch.autograd.grad(loss, inputs, retain_graph=keep, allow_unused=True)
            row = jac[i]
            for k, g in enumerate(grads[: len(shared)]):
                dst = row[offsets[k] : offsets[k + 1]]
                if g is None:
                    dst.zero_()
                else:
                    dst.copy_(g.reshape(-1))
            w = 1.0 if head_weights is None else float(head_weights[i])
            for p, g in zip(others, grads[len(shared) :], strict=True):
                if g is None:
                    continue
                if p.grad is None:
                    # autograd.grad returns fresh tensors, so the first one can become .grad
                    p.grad = g if w == 1.0 else g * w
                elif w == 1.0:
                    p.grad.add_(g)
                else:
                    p.grad.add_(g, alpha=w)
        return jac

    def write_direction(self, direction: torch.Tensor) -> None:
        """Set ``.grad`` of every shared parameter from a flat (P,) direction.

        Where a parameter has no ``.grad`` yet, it becomes a view into ``direction`` (no
        copy): the caller hands over a fresh tensor each step and must not reuse it.
        """
        offsets = self.layout.offsets
        for k, p in enumerate(self.layout.params):
            g = direction[offsets[k] : offsets[k + 1]].view_as(p)
            if p.grad is None:
                p.grad = g if g.dtype == p.dtype else g.to(p.dtype)
            else:
                p.grad.copy_(g)


def gramian(jacobian: torch.Tensor) -> torch.Tensor:
    """``G = J J^T`` as float64 (T x T).

    The product runs in the Jacobian's dtype (a float64 copy of a T x P matrix would cost more
    than the product itself); the small result is promoted so the T x T work downstream
    (cosines, solvers) is exact enough at any gradient scale.
    """
    return (jacobian @ jacobian.T).double()


def layer_gramians(jacobian: torch.Tensor, layout: SharedLayout) -> dict[str, torch.Tensor]:
    """One Gramian per shared layer (they sum to :func:`gramian` of the whole)."""
    return {name: gramian(jacobian[:, s]) for name, s in layout.layer_slices.items()}
