"""Linear-scalarization sweep points: fixed weight vectors spread over the simplex.

The sweep follows Xin et al., "Do current multi-task optimization methods in deep learning
even help?", NeurIPS 2022, and Kurin et al., "In defense of the unitary scalarization for deep
multi-task learning", NeurIPS 2022: the baseline a balancing method has to beat.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from itertools import product


def simplex_weights(T: int, K: int, seed: int = 0) -> list[list[float]]:  # noqa: N803
    """``K`` distinct weight vectors over ``T`` tasks, each positive and summing to 1.

    T = 2: the evenly spaced interior points ``(i/(K+1), 1 - i/(K+1))``, i = 1..K. T = 3: the
    points of the finest triangular grid ``(i, j, k)/n`` (all of i, j, k ≥ 1) that has at least
    K of them, thinned to K by farthest-point sampling from the centre. T ≥ 4: Dirichlet(1)
    draws (uniform on the simplex) from ``random.Random(seed)``. Deterministic for a given
    (T, K, seed). Vertices are left out on purpose: a zero weight would not train that task,
    which is a single-task baseline (``--single-task``), not a scalarization.
    """
    if T < 1 or K < 1:
        return []
    if T == 1:
        return [[1.0]]
    if T == 2:
        return [[i / (K + 1), 1.0 - i / (K + 1)] for i in range(1, K + 1)]
    if T == 3:
        n = 3
        while (n - 1) * (n - 2) // 2 < K:
            n += 1
        grid = [(i, j, n - i - j) for i, j in product(range(1, n), repeat=2) if n - i - j >= 1]
        return [[x / n for x in p] for p in _spread(grid, K, n)]
    rng = random.Random(seed)
    out: list[list[float]] = []
    while len(out) < K:
        # A Dirichlet(1, ..., 1) draw is a vector of Exp(1) draws divided by their sum.
        e = [rng.expovariate(1.0) for _ in range(T)]
        s = sum(e)
        w = [x / s for x in e]
        if w not in out:
            out.append(w)
    return out


def _spread(points: list[tuple[int, ...]], k: int, n: int) -> list[tuple[int, ...]]:
    """``k`` of ``points`` far from each other: greedy farthest-point sampling, deterministic."""
    if len(points) <= k:
        return points
    centre = [n / len(points[0])] * len(points[0])

    def d2(p: Sequence[float], q: Sequence[float]) -> float:
        return sum((a - b) ** 2 for a, b in zip(p, q, strict=True))

    chosen = [min(points, key=lambda p: (d2(p, centre), p))]
    while len(chosen) < k:
        rest = [p for p in points if p not in chosen]
        chosen.append(max(rest, key=lambda p: (min(d2(p, c) for c in chosen), p)))
    return sorted(chosen, reverse=True)
