"""Which shared layers conflict most: the one ranking the diagnosis, the layer table and the
heatmap's note all use, so they never name different layers."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class LayerScore:
    """One shared layer's conflict in one run: its worst task pair and the mean over pairs."""

    layer: str
    depth: int  # 1 is the shared layer nearest the input
    worst_pair: tuple[str, str]
    worst_rate: float  # the worst pair's conflict rate
    worst_cosine: float | None  # the worst pair's mean cosine
    mean_rate: float  # mean conflict rate over the pairs with a value


def _number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _score(layer: str, depth: int, pairs: Sequence[Mapping[str, Any]]) -> LayerScore | None:
    cells = []
    for p in pairs:
        m = (p.get("layers") or {}).get(layer) or {}
        if _number(m.get("conflict_rate")):
            cos = m.get("cosine_mean") if _number(m.get("cosine_mean")) else None
            cells.append((float(m["conflict_rate"]), cos, (str(p["a"]), str(p["b"]))))
    if not cells:
        return None
    # The worst pair conflicts most often; among equally frequent, the one pulling hardest apart.
    rate, cos, pair = max(cells, key=lambda c: (c[0], -(c[1] if c[1] is not None else 0.0)))
    mean = sum(c[0] for c in cells) / len(cells)
    return LayerScore(layer, depth, pair, rate, cos, mean)


def rank_layers(run: Mapping[str, Any], layers: Sequence[str]) -> list[LayerScore]:
    """The shared ``layers`` (input side first) of a run entry, most conflicted first.

    Ranked by the worst pair's conflict rate, then that pair's mean cosine (lower first),
    then the mean conflict rate over pairs; equal layers keep their input-to-output order.
    Layers without a conflict rate (never instrumented) are left out.
    """
    pairs = run.get("pairs") or []
    scores = [_score(layer, depth, pairs) for depth, layer in enumerate(layers, start=1)]
    kept = [s for s in scores if s is not None]
    return sorted(
        kept,
        key=lambda s: (
            -s.worst_rate,
            s.worst_cosine if s.worst_cosine is not None else 0.0,
            -s.mean_rate,
        ),
    )
