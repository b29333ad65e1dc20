"""Which shared layers conflict most: the one ranking the diagnosis, the layer table and the
heatmap's note all use, so they never name different layers.

A layer ranks by how far its worst pair's mean cosine lies below what noise alone gives. Two
unrelated directions in P dimensions have a cosine of about ±1/√P, so a 64-parameter
BatchNorm layer shows cosines of ±0.125 and a conflict rate near 50 % on noise alone; the mean
over n instrumented steps of such cosines is within ±2/√(P·n) (two standard errors) of 0. The
ranking counts only the conflict beyond that band, ``beyond_noise = min(0, cos + 2/√(P·n))``,
then prefers larger layers. Without parameter counts (a summary rebuilt from CSVs) the band is
0 and the plain mean cosine ranks.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

NOISE_SE = 2.0  # standard errors of the mean cosine that noise alone may reach


@dataclass(frozen=True)
class LayerScore:
    """One shared layer's conflict in one run: its worst task pair and the mean over pairs."""

    layer: str
    depth: int  # 1 is the shared layer nearest the input
    worst_pair: tuple[str, str]  # the pair with the lowest mean cosine on this layer
    worst_rate: float  # the worst pair's conflict rate
    worst_cosine: float | None  # the worst pair's mean cosine
    mean_rate: float  # mean conflict rate over the pairs with a value
    params: int | None = None  # the layer's parameter count (None: unknown)
    share: float | None = None  # its share of all shared parameters
    noise: float = 0.0  # the band ±NOISE_SE/√(P·n) that noise alone reaches
    beyond_noise: float = 0.0  # min(0, worst_cosine + noise): conflict noise cannot explain


def _number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def noise_band(params: int | None, steps: int | None) -> float:
    """``NOISE_SE/√(P·n)``: how far from 0 the mean cosine of noise alone may lie (0: unknown)."""
    if not params or not steps or params <= 0 or steps <= 0:
        return 0.0
    return NOISE_SE / math.sqrt(params * steps)


def _score(
    layer: str,
    depth: int,
    pairs: Sequence[Mapping[str, Any]],
    params: int | None,
    total: int | None,
) -> LayerScore | None:
    cells = []
    for p in pairs:
        m = (p.get("layers") or {}).get(layer) or {}
        if _number(m.get("conflict_rate")):
            cos = float(m["cosine_mean"]) if _number(m.get("cosine_mean")) else None
            n = m.get("conflict_rate_n") if _number(m.get("conflict_rate_n")) else None
            cells.append((float(m["conflict_rate"]), cos, (str(p["a"]), str(p["b"])), n))
    if not cells:
        return None
    # The worst pair pulls hardest apart; among equal cosines, the one conflicting most often.
    rate, cos, pair, n = min(cells, key=lambda c: (c[1] if c[1] is not None else 0.0, -c[0]))
    mean = sum(c[0] for c in cells) / len(cells)
    noise = noise_band(params, n)
    beyond = min(0.0, cos + noise) if cos is not None else 0.0
    share = params / total if params and total else None
    return LayerScore(layer, depth, pair, rate, cos, mean, params, share, noise, beyond)


def rank_layers(
    run: Mapping[str, Any],
    layers: Sequence[str],
    layer_params: Mapping[str, int] | None = None,
) -> list[LayerScore]:
    """The shared ``layers`` (input side first) of a run entry, most conflicted first.

    Ranked by ``beyond_noise`` (lowest first), then parameter count (larger first), then the
    worst pair's conflict rate and the mean rate over pairs; equal layers keep their
    input-to-output order. Layers without a conflict rate (never instrumented) are left out.
    ``layer_params`` is the summary's ``layer_params`` (parameter count per layer).
    """
    sizes = dict(layer_params or {})
    total = sum(sizes.values()) or None
    pairs = run.get("pairs") or []
    scores = [
        _score(layer, depth, pairs, sizes.get(layer), total)
        for depth, layer in enumerate(layers, start=1)
    ]
    kept = [s for s in scores if s is not None]
    return sorted(
        kept, key=lambda s: (s.beyond_noise, -(s.params or 0), -s.worst_rate, -s.mean_rate)
    )
