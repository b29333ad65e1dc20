"""Per-task gradients over the shared parameters: the Jacobian ``J`` (T x P) and its Gramians.

Everything mtldiag reports is a function of ``J``: norms are ``sqrt(G_ii)``, cosines
``G_ij / (n_i n_j)``, conflicts ``G_ij < 0``. Columns of ``J`` are laid out layer by layer, so a
layer's Gramian is ``J[:, s] J[:, s]^T`` for its column slice ``s`` and the layer Gramians sum
to the whole one.

``J`` itself is only built where something needs it (methods whose ``aggregate`` reads it, such
as GradDrop, and the torchrun path, which averages it across ranks). Gramian methods and
weighting steps keep the T gradient lists autograd returns (:meth:`JacobianEngine.task_grads`),
take the Gramians by dot products (:func:`mtldiag.engine.gramian.grads_layer_gramians`) and
sum the update in place into them (:meth:`JacobianEngine.combine_into_grads`): no T x P copy.
"""

from __future__ import annotations

from collections import Counter
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
        if (
            buf is None
            or buf.shape[0] != n_tasks
            or buf.device != like.device
            or buf.dtype != torch.float32
        ):
            buf = torch.empty(n_tasks, self.layout.numel, device=like.device, dtype=torch.float32)
            self._buffer = buf
        return buf

    def task_grads(
        self,
        losses: Sequence[torch.Tensor],
        head_weights: Sequence[float] | torch.Tensor | None = None,
        accumulate_heads: bool = True,
        retain_graph: bool = False,
    ) -> list[list[torch.Tensor | None]]:
        """Each task's gradients over the shared parameters (layout order), as autograd gave them.

        The tensors are fresh and owned by the caller (:meth:`combine_into_grads` sums them in
        place); nothing T x P is allocated. Heads get ``sum_i w_i grad L_i`` as in
        :meth:`compute`. ``None`` where a task does not reach a parameter.
        """
        shared = list(self.layout.params)
        others = self.others if accumulate_heads else []
        inputs = shared + others
        n = len(losses)
        out: list[list[torch.Tensor | None]] = []
        for i, loss in enumerate(losses):
            keep = retain_graph or i < n - 1
            grads = torch.autograd.grad(loss, inputs, retain_graph=keep, allow_unused=True)
            row = list(grads[: len(shared)])
            out.append(row)
            heads = list(grads[len(shared) :])
            if heads:
                # autograd may hand one tensor to several inputs (e.g. both sides of an add):
                # a head's .grad, summed into in place, must not be a shared gradient.
                taken = {_storage(g) for g in row if g is not None}
                heads = [g.clone() if g is not None and _storage(g) in taken else g for g in heads]
            w = 1.0 if head_weights is None else float(head_weights[i])
            self._accumulate_heads(others, heads, w)
        return out

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
            self._accumulate_heads(others, grads[len(shared) :], w)
        return jac

    @staticmethod
    def _accumulate_heads(
        others: Sequence[torch.Tensor], grads: Sequence[torch.Tensor | None], w: float
    ) -> None:
        for p, g in zip(others, grads, strict=True):
            if g is None:
                continue
            if p.grad is None:
                # autograd.grad returns fresh tensors, so the first one can become .grad
                p.grad = g if w == 1.0 else g * w
            elif w == 1.0:
                p.grad.add_(g)
            else:
                p.grad.add_(g, alpha=w)

    def combine_into_grads(
        self, task_grads: list[list[torch.Tensor | None]], weights: torch.Tensor
    ) -> None:
        """Set each shared ``.grad`` to ``sum_i w_i g_i``, summed in place into a task's tensor.

        The same pattern as a plain multi-pass update (no T x P buffer, no extra copy): the
        tensors of ``task_grads`` are consumed (overwritten) and must not be used afterwards.
        """
        w = [float(v) for v in weights.detach().double().cpu().tolist()]
        # A tensor autograd returned for several inputs (or an expanded one) is not ours to
        # overwrite: such a sum starts from a copy.
        uses = Counter(_storage(g) for row in task_grads for g in row if g is not None)
        for k, p in enumerate(self.layout.params):
            present = [(w[i], g[k]) for i, g in enumerate(task_grads) if g[k] is not None]
            # Start from a tensor whose weight is 1 (if any): its scale pass is then skipped.
            present.sort(key=lambda item: item[0] != 1.0)
            if not present:
                d = torch.zeros_like(p)
            else:
                wi, d = present[0]
                if uses[_storage(d)] > 1 or not d.is_contiguous():
                    d = d.clone()
                if wi != 1.0:
                    d.mul_(wi)
                for wj, g in present[1:]:
                    if wj == 1.0:
                        d.add_(g)
                    elif wj != 0.0:
                        d.add_(g, alpha=wj)
                if d.dtype != p.dtype:
                    d = d.to(p.dtype)
            if p.grad is None:
                p.grad = d.view_as(p)
            else:
                p.grad.copy_(d.view_as(p))

    def flatten(self, grads: Sequence[torch.Tensor | None]) -> torch.Tensor:
        """One task's gradients over the shared parameters (layout order) as a (P,) vector in
        their dtype: a row of ``J``, zeros where the task does not reach a parameter.

        The vector is a buffer reused by the next call (the one-task step's: read it, do not
        keep it); it shares the Jacobian buffer's slot, so the engine holds one or the other.
        """
        like = next((g for g in grads if g is not None), self.layout.params[0])
        buf = self._buffer
        if buf is None or buf.shape[0] != 1 or buf.device != like.device or buf.dtype != like.dtype:
            buf = torch.empty(1, self.layout.numel, device=like.device, dtype=like.dtype)
            self._buffer = buf
        flat = buf[0]
        offsets = self.layout.offsets
        for k, g in enumerate(grads):
            dst = flat[offsets[k] : offsets[k + 1]]
            if g is None:
                dst.zero_()
            else:
                dst.copy_(g.reshape(-1))
        return flat

    def write_direction(
        self,
        direction: torch.Tensor,
        reuse: Sequence[torch.Tensor | None] | None = None,
    ) -> None:
        """Set ``.grad`` of every shared parameter from a flat (P,) direction.

        Where a parameter has no ``.grad`` yet, it becomes a view into ``direction`` (no
        copy): the caller hands over a fresh tensor each step and must not reuse it. With
        ``reuse`` (one task's gradients in layout order, as autograd returned them, owned by
        the caller and not used afterwards) it takes that tensor instead, the direction
        copied in: ``direction`` may then be a buffer the caller reuses.
        """
        offsets = self.layout.offsets
        uses = Counter(_storage(g) for g in reuse or () if g is not None)
        for k, p in enumerate(self.layout.params):
            g = direction[offsets[k] : offsets[k + 1]].view_as(p)
            if p.grad is not None:
                p.grad.copy_(g)
            elif reuse is None:
                p.grad = g if g.dtype == p.dtype else g.to(p.dtype)
            else:
                r = reuse[k]
                own = (
                    r is not None
                    and uses[_storage(r)] == 1
                    and r.dtype == p.dtype
                    and r.shape == p.shape
                    and r.is_contiguous()
                )
                if own:
                    assert r is not None
                    p.grad = r.copy_(g)
                else:
                    p.grad = g.to(p.dtype, copy=True)


def _storage(t: torch.Tensor) -> int:
    return t.untyped_storage().data_ptr()
