"""GradNorm's per-task norms on a last shared ``nn.Linear`` without T weight-gradient products.

For a linear layer ``Y = X W^T + b`` (X: N x in, Y: N x out, leading dimensions flattened) each
task's weight gradient is ``G_i^T X`` with ``G_i = dL_i/dY``, so

    ||grad_W L_i||^2 = <G_i G_i^T, X X^T>  (N x N products),   ||grad_b L_i||^2 = ||1^T G_i||^2.

The ``G_i`` come from T backward passes through the heads only (what a plain step's backward
does anyway), so the step becomes: T passes ``autograd.grad(w_i L_i, [Y, heads])`` (the heads'
``.grad`` as the plain backward writes them), the norms from ``G_i`` and ``X``, then one
backward of ``Y`` with ``sum_i G_i`` through the trunk (representation-style, exactly the plain
step's update). The N x N form costs ``N^2 (in + T out)`` multiply-adds against
``T N in out`` for the T weight gradients; it is taken only when smaller, and its symmetric
products are taken block-triangularly (each off-diagonal block once, doubled).

Exact only when ``Y`` is the one way from the losses into the trunk and the layer is used once:
:func:`linear_capture` installs the hook only on exactly an ``nn.Linear`` that alone holds the
parameters (found by identity, not by name), with every trainable parameter of the model shared
or a head (``others``); each step, :meth:`LinearCapture.usable` requires one forward with ``X``
and ``Y`` unchanged in place since (an in-place ReLU on ``Y`` would make autograd's ``Y`` its
output), and :func:`heads_only` that every parameter the losses reach other than through ``Y``
is a head (a skip connection around the layer, a weight tied into a head, or a parameter
outside the model would get no or a wrong ``.grad`` from the head passes). Otherwise the step
core (:func:`mtldiag.engine.step.backward_step`) takes the partial ``autograd.grad`` path.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

BLOCK = 64  # rows per block of K's triangle: at N = 256, 3/8 of the work skipped (best of 32-128)


class LinearCapture:
    """The input and output of one ``nn.Linear`` on each forward (a removable forward hook).

    ``params``: the layer's parameters the norms are taken on (its weight, and its bias when
    that is one of them). ``usable()`` holds only after exactly one grad-enabled forward since
    the last :meth:`clear`, with neither ``X`` nor ``Y`` modified in place since: a module
    called twice in a forward (weight sharing), or not at all (the step's forward ran before
    the hook existed), is left to the exact fallback.
    """

    def __init__(self, module: nn.Linear, params: Sequence[torch.Tensor]) -> None:
        self.module = module
        self.with_bias = module.bias is not None and any(p is module.bias for p in params)
        self.x: torch.Tensor | None = None
        self.y: torch.Tensor | None = None
        self.calls = 0
        self._versions = (0, 0)
        self._handle: Any = module.register_forward_hook(self._hook)

    def _hook(self, module: nn.Module, inputs: Any, output: Any) -> None:
        if not (torch.is_grad_enabled() and isinstance(output, torch.Tensor)):
            return  # an evaluation forward: not a training step's
        if output.requires_grad:
            self.x, self.y = inputs[0], output
            self._versions = (self.x._version, output._version)
            self.calls += 1

    def usable(self) -> bool:
        if self.calls != 1 or self.x is None or self.y is None:
            return False
        return (self.x._version, self.y._version) == self._versions

    def clear(self) -> None:
        """Forget this step's tensors (they would keep the batch's activations alive)."""
        self.x = self.y = None
        self.calls = 0

    def remove(self) -> None:
        if self._handle is not None:
            self._handle.remove()
            self._handle = None
        self.clear()


def linear_capture(
    model: nn.Module,
    params: Sequence[torch.Tensor],
    covered: Sequence[torch.Tensor],
) -> LinearCapture | None:
    """A capture on the module of ``model`` that holds ``params``, when the fast norms are exact.

    ``params``: the parameters the norms are taken on; the module is found by their identity
    (a caller's names may be relative to a submodule: ``encoder.named_parameters()``), and must
    be exactly an ``nn.Linear`` whose weight (and bias) they are and which alone holds them (a
    weight tied into a second module is used twice). ``covered``: shared and head parameters;
    every trainable parameter of the model must be one of them. ``None`` where any fails.
    """
    owners = [
        m
        for m in model.modules()
        if any(q is p for q in m.parameters(recurse=False) for p in params)
    ]
    if len(owners) != 1:
        return None
    module = owners[0]
    if type(module) is not nn.Linear:  # a subclass may change forward (LoRA, quantised)
        return None
    own = [module.weight] + ([module.bias] if module.bias is not None else [])
    if not any(p is module.weight for p in params) or not all(
        any(p is q for q in own) for p in params
    ):
        return None
    known = {id(p) for p in covered}
    if any(p.requires_grad and id(p) not in known for p in model.parameters()):
        return None
    return LinearCapture(module, params)


def heads_only(
    ordered: Sequence[torch.Tensor], y: torch.Tensor, others: Sequence[torch.Tensor]
) -> bool:
    """Whether every parameter the losses reach other than through ``y`` is one of ``others``.

    Walks the autograd graph from the losses down to ``y``'s node (not past it): the part the
    head passes cover. A leaf found there that is not a head (a skip connection from the trunk
    around ``y``, a shared weight reused in a head, a parameter outside the model) would get
    no gradient from those passes, nor from the one backward of ``y``.
    """
    stop = y.grad_fn
    known = {id(p) for p in others}
    seen: set[Any] = set()
    todo = [loss.grad_fn for loss in ordered]
    while todo:
        node = todo.pop()
        if node is None or node is stop or node in seen:
            continue
        seen.add(node)
        leaf = getattr(node, "variable", None)  # AccumulateGrad: a leaf that requires grad
        if leaf is not None:
            if id(leaf) not in known:
                return False
            continue
        todo.extend(f for f, _ in node.next_functions)
    return True


def squared_norms(x: torch.Tensor, gs: Sequence[torch.Tensor]) -> torch.Tensor:
    """(T,) float64: ``||G_i^T X||_F^2`` for the N x in ``x`` and each N x out ``G_i``.

    The N x N form ``<K G_i, G_i>`` with ``K = X X^T``, when it is fewer multiply-adds than
    the T direct products ``G_i^T X``. K is symmetric, so only its upper block-triangle is
    formed: row block ``a`` against rows ``a:`` (the diagonal block halved, the sum doubled),
    ``(1 + BLOCK/N) / 2`` of the work. Each block of K serves every task (no T x N x out copy).
    """
    n, d_in = x.shape
    t, d_out = len(gs), gs[0].shape[1]
    if n * (d_in + t * d_out) >= t * d_in * d_out:
        return torch.stack([(g.t() @ x).double().pow(2).sum() for g in gs])
    rows = []
    for a in range(0, n, BLOCK):
        k = x[a : a + BLOCK] @ x[a:].t()  # rows a.. of K's upper block-triangle
        k[:, : min(BLOCK, n - a)] *= 0.5  # the diagonal block is its own mirror: once
        dots = [torch.vdot((k @ g[a:]).view(-1), g[a : a + BLOCK].reshape(-1)) for g in gs]
        rows.append(torch.stack(dots))
    return 2 * torch.stack(rows).double().sum(dim=0)


def linear_norm_pass(
    capture: LinearCapture,
    ordered: Sequence[torch.Tensor],
    weights: torch.Tensor,
    others: Sequence[torch.Tensor],
) -> torch.Tensor:
    """The plain step ``sum_i w_i L_i`` through the heads and trunk, and the T norms.

    Returns (T,) float32: ``||grad L_i||`` on the captured layer's parameters (the ``w_i L_i``
    gradients divided by ``|w_i|``; the caller checks every ``w_i`` is non-zero and finite).
    The heads' ``.grad`` are the per-task gradients of ``w_i L_i`` (each head is reached by
    its own task); ``Y`` is back-propagated once with their sum.
    """
    assert capture.x is not None and capture.y is not None
    y = capture.y
    x = capture.x.detach().reshape(-1, capture.x.shape[-1]).float()
    ys: list[torch.Tensor] = []
    for i, loss in enumerate(ordered):
        grads = torch.autograd.grad(
            loss,
            [y, *others],
            grad_outputs=weights[i].to(loss),  # as the plain backward seeds L_i: w_i
            retain_graph=True,
            allow_unused=True,
        )
        taken = None if grads[0] is None else grads[0].untyped_storage().data_ptr()
        for p, g in zip(others, grads[1:], strict=True):
            if g is None:
                continue
            if g.untyped_storage().data_ptr() == taken:
                g = g.clone()  # one tensor handed to Y and a head: summed into below
            if p.grad is None:
                p.grad = g
            else:
                p.grad.add_(g)
        ys.append(torch.zeros_like(y) if grads[0] is None else grads[0])
    gs = [g_y.reshape(-1, y.shape[-1]).float() for g_y in ys]
    sq = squared_norms(x, gs)
    if capture.with_bias:
        sq = sq + torch.stack([g.sum(dim=0).double().pow(2).sum() for g in gs])
    # Summed last task first: autograd's engine runs later-created nodes first, so a plain
    # backward's buffer at Y adds the heads' gradients in that order; so summed, the trunk's
    # .grad is bitwise the plain step's on a trunk-and-heads model (tested). The norms are
    # taken, so the last G (autograd's own fresh tensor) is summed into in place; an
    # expanded or otherwise non-contiguous one is copied first.
    dy = ys[-1] if ys[-1].is_contiguous() else ys[-1].clone()
    for g_y in reversed(ys[:-1]):
        dy.add_(g_y)
    y.backward(dy)
    capture.clear()
    return (sq.sqrt() / weights.double().abs().to(sq.device)).float().cpu()
