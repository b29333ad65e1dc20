"""Preview: what every Gramian method would do on the Gramians a profile run records.

For a method with weights ``w = f(G)`` and direction ``d = Jᵀw``, everything first-order is a
function of ``G`` alone:

* task i's first-order gain ``g_iᵀd = (G w)_i`` — its loss decreases (to first order, for a
  small step along ``-d``) iff it is positive;
* the *gain* we report is ``g_iᵀd / ||g_i||``, the length of d's projection on task i's unit
  gradient: comparable across tasks whose losses have different scales;
* the angle between d and the plain sum ``s = sum_i g_i``:
  ``cos = wᵀG1 / (sqrt(wᵀGw) sqrt(1ᵀG1))``.

So no training (and no extra backward pass) is needed to see which methods would resolve a
model's conflict. The plain sum (EW's direction, ``w = 1``) comes first as the reference.
Methods are given as instances (or names, created fresh); the accumulator resets them once
and then feeds the recorded Gramians in order, so stateful methods (PCGrad's generator,
GradVac's EMA, Nash-MTL's warm start) evolve as if they were training — but along the
trajectory of the recorded run, not their own. Weighting methods and methods that need the
whole Jacobian (GradDrop) are skipped.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch

from mtldiag import methods as _methods
from mtldiag.methods.base import GramianMethod, Method, RunContext


def default_methods() -> list[Method]:
    """Fresh instances (paper defaults) of every Gramian method."""
    return [cls() for cls in _methods.METHODS if issubclass(cls, GramianMethod)]


def preview(
    gramian: torch.Tensor,
    losses: torch.Tensor | None,
    methods: Sequence[Method],
    include_sum: bool = True,
) -> dict[str, dict[str, Any]]:
    """One step: ``{method: {all_decrease, gains, gain_norm, angle_to_sum, weights}}``.

    With ``include_sum`` the first entry, ``"ew"``, is the plain sum ``w = 1`` (the reference).

    ``all_decrease``: every ``g_iᵀd > 0``; ``gains``: ``g_iᵀd`` per task (list, task order);
    ``gain_norm``: ``g_iᵀd / ||g_i||``; ``angle_to_sum``: degrees (NaN if d or the sum is 0).
    Non-Gramian methods are skipped. Methods must have been ``reset`` by the caller.
    """
    g = gramian.detach().to("cpu", torch.float64)
    n = g.shape[0]
    ones = torch.ones(n, dtype=torch.float64)
    norms = torch.diagonal(g).clamp_min(0).sqrt()
    sum_sq = float(ones @ g @ ones)
    out: dict[str, dict[str, Any]] = {}
    chosen: list[tuple[str, Method | None]] = [("ew", None)] if include_sum else []
    chosen += [(_label(m), m) for m in methods if isinstance(m, GramianMethod)]
    for label, m in chosen:
        if m is None:
            w = ones
        else:
            w = m.weights_from_gramian(g, losses).detach().to("cpu", torch.float64)
        gains = g @ w
        d_sq = float(w @ g @ w)
        gain_norm = torch.where(norms > 0, gains / norms.clamp_min(1e-300), torch.zeros_like(gains))
        if d_sq > 0 and sum_sq > 0:
            cos = float(w @ g @ ones) / math.sqrt(d_sq * sum_sq)
            angle = math.degrees(math.acos(max(-1.0, min(1.0, cos))))
        else:
            angle = float("nan")
        out[label] = {
            "all_decrease": bool((gains > 0).all()),
            "gains": gains.tolist(),
            "gain_norm": gain_norm.tolist(),
            "angle_to_sum": angle,
            "weights": w.tolist(),
        }
    return out


def _label(m: Method) -> str:
    """``cagrad`` with its paper defaults, ``cagrad:c=0.9`` otherwise (as ``--method``)."""
    defaults = {p.name: p.default for p in m.params}
    changed = [f"{k}={v}" for k, v in m.hyperparams().items() if defaults.get(k) != v]
    return f"{m.name}:{','.join(changed)}" if changed else m.name


class PreviewAccumulator:
    """Feed it each instrumented step's Gramian; get one summary row per method.

    ``methods``: instances or names (``"cagrad:c=0.5"`` strings accepted); default: every
    Gramian method with its paper defaults. Names are created fresh here; all methods are
    ``reset`` with a context for ``tasks`` and ``seed``.
    """

    def __init__(
        self,
        tasks: Sequence[str],
        methods: Sequence[Method | str] | None = None,
        seed: int = 0,
        dtype: torch.dtype | None = None,
    ) -> None:
        self.tasks = list(tasks)
        chosen = (
            default_methods()
            if methods is None
            else [_methods.parse(m) if isinstance(m, str) else m for m in methods]
        )
        self.methods = [m for m in chosen if isinstance(m, GramianMethod)]
        ctx = RunContext(tasks=tuple(self.tasks), seed=seed, dtype=dtype)
        for m in self.methods:
            m.reset(ctx)
        self._n = 0
        self._acc = {
            label: {"decrease": 0, "gain": [0.0] * len(self.tasks), "angle": 0.0, "angle_n": 0}
            for label in ["ew", *(_label(m) for m in self.methods)]
        }

    def add(self, gramian: torch.Tensor, losses: torch.Tensor | None = None) -> dict[str, dict]:
        """Add one step (G is T x T in task order); returns that step's :func:`preview`."""
        res = preview(gramian, losses, self.methods)
        self._n += 1
        for name, r in res.items():
            acc = self._acc[name]
            acc["decrease"] += int(r["all_decrease"])
            acc["gain"] = [a + b for a, b in zip(acc["gain"], r["gain_norm"], strict=True)]
            if not math.isnan(r["angle_to_sum"]):
                acc["angle"] += r["angle_to_sum"]
                acc["angle_n"] += 1
        return res

    @property
    def steps(self) -> int:
        return self._n

    def rows(self) -> list[dict[str, Any]]:
        """``{method, steps, all_decrease_rate, gain_mean: {task}, angle_to_sum_mean}``."""
        out = []
        for name, acc in self._acc.items():
            n = max(self._n, 1)
            out.append(
                {
                    "method": name,
                    "steps": self._n,
                    "all_decrease_rate": acc["decrease"] / n if self._n else float("nan"),
                    "gain_mean": {t: g / n for t, g in zip(self.tasks, acc["gain"], strict=True)},
                    "angle_to_sum_mean": (acc["angle"] / acc["angle_n"])
                    if acc["angle_n"]
                    else float("nan"),
                }
            )
        return out

    def summary(self) -> dict[str, Any]:
        """The ``preview`` entry of ``summary.json`` (JSON-safe: NaN becomes ``null``).

        ``{"steps": n, "tasks": [...], "methods": [row, ...]}``, rows as :meth:`rows`, the
        plain sum (``ew``) first.
        """

        def safe(x: float) -> float | None:
            return None if x is None or not math.isfinite(x) else float(x)

        rows = [
            {
                **r,
                "all_decrease_rate": safe(r["all_decrease_rate"]),
                "angle_to_sum_mean": safe(r["angle_to_sum_mean"]),
                "gain_mean": {t: safe(v) for t, v in r["gain_mean"].items()},
            }
            for r in self.rows()
        ]
        return {"steps": self._n, "tasks": list(self.tasks), "methods": rows}
