"""Step metrics as functions of the Gramian ``G = J J^T`` (and its per-layer pieces).

For tasks i, j: norm ``n_i = sqrt(G_ii)``, dot ``G_ij``, cosine ``G_ij / (n_i n_j)`` (0 when a
norm is 0, never NaN), conflict ``cosine < 0``, and the gradient magnitude similarity of
Yu et al. 2020 (PCGrad), ``GMS = 2 n_i n_j / (n_i^2 + n_j^2)`` (1 when both norms are 0).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from mtldiag.engine.jacobian import SharedLayout

ALL_LAYERS = "*"  # the layer label of the whole shared parameter set


def norms(gramian: torch.Tensor) -> torch.Tensor:
    """Per-task gradient norms from a (..., T, T) Gramian."""
    return torch.diagonal(gramian, dim1=-2, dim2=-1).clamp_min(0).sqrt()


def cosines(gramian: torch.Tensor) -> torch.Tensor:
    """Pairwise cosines (..., T, T); 0 wherever a gradient is zero."""
    n = norms(gramian)
    denom = n.unsqueeze(-1) * n.unsqueeze(-2)
    return torch.where(denom > 0, gramian / denom.clamp_min(torch.finfo(gramian.dtype).tiny), 0.0)


def gms(gramian: torch.Tensor) -> torch.Tensor:
    """Pairwise gradient magnitude similarity (..., T, T); 1 where both norms are 0."""
    n = norms(gramian)
    num = 2 * n.unsqueeze(-1) * n.unsqueeze(-2)
    den = n.unsqueeze(-1) ** 2 + n.unsqueeze(-2) ** 2
    return torch.where(den > 0, num / den.clamp_min(torch.finfo(gramian.dtype).tiny), 1.0)


def pair_indices(n_tasks: int) -> list[tuple[int, int]]:
    return [(i, j) for i in range(n_tasks) for j in range(i + 1, n_tasks)]


@dataclass(frozen=True)
class StepMetrics:
    """Metrics of one instrumented step, as plain Python numbers.

    ``layers[0]`` is :data:`ALL_LAYERS`; ``dot``/``cosine``/``gms`` are indexed
    ``[layer][pair]`` with pairs in :func:`pair_indices` order; ``grad_norm`` is per task over
    all shared parameters; ``layer_norms[layer][task]``.
    """

    layers: list[str]
    pairs: list[tuple[int, int]]
    grad_norm: list[float]
    layer_norms: list[list[float]]
    dot: list[list[float]]
    cosine: list[list[float]]
    gms: list[list[float]]


_CHUNK = 4096


def small_gram(x: torch.Tensor) -> torch.Tensor:
    """``x x^T`` for a short, wide ``x`` (T x n, rows may be strided).

    A plain GEMM with T x T output runs far below memory speed; cutting the columns into
    chunks and summing a batched product is about twice as fast on CPU (measured in
    benchmarks/bench_profile.py's setting) and gives the same result up to rounding.
    """
    t, n = x.shape
    if n < 2 * _CHUNK:
        return x @ x.T
    c = n // _CHUNK
    m = c * _CHUNK
    blocks = x[:, :m].reshape(t, c, _CHUNK).transpose(0, 1)  # (c, T, chunk), a view
    g = torch.bmm(blocks, blocks.transpose(1, 2)).sum(0)
    if m < n:
        g = g + x[:, m:] @ x[:, m:].T
    return g


def stacked_gramians(jacobian: torch.Tensor, layout: SharedLayout) -> torch.Tensor:
    """(L+1, T, T) float64: the whole Gramian first, then one per layer.

    The whole one is the sum of the layer ones, so the big T x P product is done once, per
    layer, and never again for the total.
    """
    per_layer = [small_gram(jacobian[:, s]) for s in layout.layer_slices.values()]
    return stack_layers(torch.stack(per_layer))


def stack_layers(per_layer: torch.Tensor) -> torch.Tensor:
    """(L+1, T, T) float64 from (L, T, T) layer Gramians: their sum first, then each layer."""
    stack = per_layer.double()
    return torch.cat([stack.sum(0, keepdim=True), stack])


def stacked_gramians_from_grads(
    task_grads: Sequence[Sequence[torch.Tensor | None]], layout: SharedLayout
) -> torch.Tensor:
    """:func:`stacked_gramians` from per-task gradient lists (no ``J``): same shape and dtype."""
    return stack_layers(grads_layer_gramians(task_grads, layout))


def step_metrics(stack: torch.Tensor, layout: SharedLayout) -> StepMetrics:
    """All step metrics from :func:`stacked_gramians`, moved to the host in one transfer."""
    t = stack.shape[-1]
    pairs = pair_indices(t)
    ii = torch.tensor([p[0] for p in pairs], dtype=torch.long, device=stack.device)
    jj = torch.tensor([p[1] for p in pairs], dtype=torch.long, device=stack.device)
    n = norms(stack)  # (L+1, T)
    packed = (
        torch.cat(
            [
                n,
                stack[:, ii, jj],
                cosines(stack)[:, ii, jj],
                gms(stack)[:, ii, jj],
            ],
            dim=1,
        )
        .cpu()
        .tolist()
    )
    k = len(pairs)
    return StepMetrics(
        layers=[ALL_LAYERS, *layout.layer_slices],
        pairs=pairs,
        grad_norm=packed[0][:t],
        layer_norms=[row[:t] for row in packed],
        dot=[row[t : t + k] for row in packed],
        cosine=[row[t + k : t + 2 * k] for row in packed],
        gms=[row[t + 2 * k : t + 3 * k] for row in packed],
    )


def grads_layer_gramians(
    task_grads: Sequence[Sequence[torch.Tensor | None]], layout: SharedLayout
) -> torch.Tensor:
    """(L, T, T) per-layer Gramians from per-task gradient lists, without materialising ``J``.

    Equal (up to rounding) to ``J[:, s] J[:, s]^T`` for each layer's slice ``s``, in the
    gradients' dtype. One BLAS dot per parameter and task pair, all summed per layer at the
    end: measured faster than copying into ``J`` and multiplying (a T x T GEMM output runs far
    below memory speed), and faster than cache-sized chunks (per-call overhead dominates).
    """
    n = len(task_grads)
    params = layout.params
    pairs = [(a, b) for a in range(n) for b in range(a, n)]
    first = next((g for row in task_grads for g in row if g is not None), None)
    like = first if first is not None else params[0].detach()
    zero = torch.zeros((), dtype=like.dtype, device=like.device)
    vals: list[torch.Tensor] = []
    for k in range(len(params)):
        flat = [None if g[k] is None else g[k].reshape(-1) for g in task_grads]
        for a, b in pairs:
            fa, fb = flat[a], flat[b]
            vals.append(zero if fa is None or fb is None else torch.dot(fa, fb))
    layer_index = torch.tensor(_param_layers(layout), device=like.device)
    per_param = torch.stack(vals).view(len(params), len(pairs))
    per_layer = per_param.new_zeros(len(layout.layer_slices), len(pairs))
    per_layer.index_add_(0, layer_index, per_param)
    ia = torch.tensor([a for a, _ in pairs], device=like.device)
    ib = torch.tensor([b for _, b in pairs], device=like.device)
    out = per_param.new_zeros(len(layout.layer_slices), n, n)
    out[:, ia, ib] = per_layer
    out[:, ib, ia] = per_layer
    return out


def _param_layers(layout: SharedLayout) -> list[int]:
    """The layer number of each parameter, in layout order."""
    stops = [s.stop for s in layout.layer_slices.values()]
    out, li = [], 0
    for k in range(len(layout.params)):
        while layout.offsets[k + 1] > stops[li]:
            li += 1
        out.append(li)
    return out
