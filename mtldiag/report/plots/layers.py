"""The conflict rate per shared layer and task pair of the reference run."""

from __future__ import annotations

from typing import Any

import numpy as np

from mtldiag.analysis.layers import rank_layers
from mtldiag.report.plots.style import (
    Style,
    adjust,
    plt,
)
from mtldiag.rundir.load import RunData
from mtldiag.rundir.schema import reference_run


def layer_heatmap(data: RunData, styles: dict[str, Style]) -> tuple[Any, str] | None:
    summary = data.summary or {}
    layers = summary.get("layers") or []
    run = reference_run(summary.get("runs") or [], summary.get("tasks") or [])
    if run is None or len(layers) < 2 or not run.get("pairs"):
        return None
    pairs = run["pairs"]
    grid = np.full((len(layers), len(pairs)), np.nan)
    for j, p in enumerate(pairs):
        for i, layer in enumerate(layers):
            v = ((p.get("layers") or {}).get(layer) or {}).get("conflict_rate")
            if v is not None:
                grid[i, j] = v
    if np.isnan(grid).all():
        return None
    name_w = 0.55 + 0.055 * max(len(x) for x in layers)  # inches for the layer names
    h = min(14.0, 1.8 + 0.32 * len(layers))
    w = min(16.0, name_w + 1.2 + max(4.5, 1.0 * len(pairs)))
    fig, ax = plt.subplots(figsize=(w, h))
    im = ax.imshow(grid, cmap="Reds", vmin=0, vmax=1, aspect="auto")
    ax.set_xticks(
        range(len(pairs)),
        [f"{p['a']}–{p['b']}" for p in pairs],
        rotation=30 if len(pairs) > 4 else 0,
        ha="right" if len(pairs) > 4 else "center",
        fontsize=8,
    )
    ax.set_yticks(range(len(layers)), layers, fontsize=8 if len(layers) < 30 else 6)
    if grid.size <= 300:
        for i in range(grid.shape[0]):
            for j in range(grid.shape[1]):
                if not np.isnan(grid[i, j]):
                    ax.text(
                        j,
                        i,
                        f"{grid[i, j]:.0%}",
                        ha="center",
                        va="center",
                        fontsize=7,
                        color="white" if grid[i, j] > 0.6 else "black",
                    )
    ax.set_xlabel("task pair")
    ax.set_ylabel("shared layer (input side on top)")
    bar = fig.add_axes((1 - 0.75 / w, 0.5 / h + 0.05, 0.15 / w, 1 - 0.9 / h - 0.1))
    fig.colorbar(im, cax=bar, label="conflict rate")
    who = f"run {run.get('method')}, seed {run.get('seed')}"
    ax.set_title(f"Conflict rate per shared layer and task pair ({who})", fontsize=11)
    rotated = 0.06 * max(len(p["a"]) + len(p["b"]) + 1 for p in pairs) * 0.5
    adjust(fig, left=name_w, top=0.4, bottom=0.5 + (rotated if len(pairs) > 4 else 0.0), right=1.1)
    top = rank_layers(run, layers)[:1]
    note = f" The most conflicted layer is '{top[0].layer}'." if top else ""
    return (
        fig,
        "Share of instrumented steps where the pair's gradients on that layer have a "
        "negative cosine." + note,
    )
