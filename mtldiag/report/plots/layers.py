"""The mean gradient cosine per shared layer and task pair, one panel per method."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from mtldiag.analysis.layers import rank_layers
from mtldiag.report.plots.style import Style, adjust, plt
from mtldiag.rundir.load import RunData
from mtldiag.rundir.schema import label_kind, reference_run

MAX_PANELS = 6


def _grid(runs: Sequence[Mapping[str, Any]], layers: Sequence[str]) -> tuple[np.ndarray, list]:
    """Mean over ``runs`` (one method's seeds) of each layer's and pair's mean cosine."""
    pairs = list(runs[0].get("pairs") or [])
    total = np.zeros((len(layers), len(pairs)))
    count = np.zeros_like(total)
    for r in runs:
        for j, p in enumerate(r.get("pairs") or []):
            for i, layer in enumerate(layers):
                v = ((p.get("layers") or {}).get(layer) or {}).get("cosine_mean")
                if isinstance(v, (int, float)) and np.isfinite(v):
                    total[i, j] += v
                    count[i, j] += 1
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan), pairs


def layer_heatmap(data: RunData, styles: dict[str, Style]) -> tuple[Any, str] | None:
    summary = data.summary or {}
    layers = summary.get("layers") or []
    runs = summary.get("runs") or []
    ref = reference_run(runs, summary.get("tasks") or [])
    if ref is None or len(layers) < 2 or not ref.get("pairs"):
        return None
    by: dict[str, list] = {}
    for r in runs:
        if label_kind(str(r.get("method"))) == "method" and r.get("pairs"):
            if r.get("status") == "ok" or len(runs) == 1:
                by.setdefault(str(r["method"]), []).append(r)
    panels = [(m, *_grid(rs, layers)) for m, rs in list(by.items())[:MAX_PANELS]]
    panels = [p for p in panels if not np.isnan(p[1]).all()]
    if not panels:
        return None
    span = max(0.05, float(np.nanmax([np.nanmax(np.abs(g)) for _, g, _ in panels])))
    n_pairs = max(g.shape[1] for _, g, _ in panels)
    name_w = 0.55 + 0.055 * max(len(x) for x in layers)
    panel_w = max(2.2, 0.8 * n_pairs + 0.6)
    h = min(14.0, 2.0 + 0.32 * len(layers))
    fig, axes = plt.subplots(
        1, len(panels), figsize=(name_w + panel_w * len(panels) + 1.0, h), squeeze=False
    )
    im = None
    for ax, (method, grid, pairs) in zip(axes[0], panels, strict=True):
        im = ax.imshow(grid, cmap="RdBu", vmin=-span, vmax=span, aspect="auto")
        ax.set_xticks(
            range(len(pairs)),
            [f"{p['a']}–{p['b']}" for p in pairs],
            rotation=30 if len(pairs) > 2 else 0,
            ha="right" if len(pairs) > 2 else "center",
            fontsize=7,
        )
        ax.set_yticks(range(len(layers)))
        ax.set_yticklabels(
            layers if ax is axes[0][0] else [], fontsize=8 if len(layers) < 30 else 6
        )
        if grid.size <= 200:
            for (i, j), v in np.ndenumerate(grid):
                if np.isfinite(v):
                    ax.text(
                        j,
                        i,
                        f"{v:+.2f}",
                        ha="center",
                        va="center",
                        fontsize=6,
                        color="white" if abs(v) > 0.6 * span else "black",
                    )
        seeds = len(by[method])
        ax.set_title(f"{method} ({seeds} seed{'s' if seeds > 1 else ''})", fontsize=9)
    axes[0][0].set_ylabel("shared layer (input side on top)")
    w = fig.get_size_inches()[0]
    bar = fig.add_axes((1 - 0.7 / w, 0.2, 0.12 / w, 0.6))
    fig.colorbar(im, cax=bar, label="mean cosine (red: conflict)")
    fig.suptitle("Mean gradient cosine per shared layer and task pair", fontsize=11)
    adjust(fig, left=name_w, top=0.55, bottom=0.9, right=1.0, wspace=0.08)
    top = rank_layers(ref, layers, summary.get("layer_params"))[:1]
    note = (
        f" The most conflicted layer (the diagnosis' ranking) is '{top[0].layer}'." if top else ""
    )
    return fig, (
        "Mean cosine of the two tasks' gradients on each shared layer over the instrumented "
        "steps, averaged over seeds; red is conflict, blue agreement, white 0." + note
    )
