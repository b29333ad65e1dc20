"""Gradient normalisation: rescale each task gradient to a common norm before summing."""

from __future__ import annotations

import numpy as np
import torch

from mtldiag.methods._utils import checks
from mtldiag.methods._utils.convert import to_numpy, to_torch
from mtldiag.methods.base import GramianMethod, HyperParam, RunContext


class GradNormalize(GramianMethod):
    """Gradient normalisation — the seed's untried idea (Su, "Balancing multiple losses"
    §2.1 side note): ``d = sum_i s_i g_i / ||g_i||``, "why not normalise each gradient
    directly?", optionally with GradNorm's training-rate factor ``r_i^α``.

    :param norm: ``unit`` — every task gradient rescaled to norm 1 (``s_i = 1``); ``mean`` —
        to the mean of the task-gradient norms (keeps the overall scale of the step).
    :param alpha: if > 0, multiply task i by ``r_i^α`` with ``r_i = L̃_i / mean(L̃)``,
        ``L̃_i = L_i / L_i(0)`` (GradNorm's relative inverse training rate; needs the
        losses). Default 0 (off).

    A zero gradient keeps weight 0. Invariant to rescaling any task's loss (the direction
    only depends on the unit gradients, and on loss ratios through ``r``).
    """

    name = "gradnormalize"
    aliases = ("grad_normalize", "gradient_normalization", "unit_grad")
    paper = "Su 2022, seed 'Balancing multiple losses' §2.1 (side note, untried)"
    params = (
        HyperParam("norm", "unit", "unit | mean"),
        HyperParam("alpha", 0.0, "GradNorm training-rate exponent (0: off)"),
    )

    def __init__(self, norm: str = "unit", alpha: float = 0.0) -> None:
        self.norm = checks.choice("norm", norm, ("unit", "mean"))
        self.alpha = checks.real("alpha", alpha, low=0.0)
        self._l0: torch.Tensor | None = None
        self.stateful = self.alpha > 0  # keeps the initial losses only when alpha > 0

    def reset(self, ctx: RunContext) -> None:
        super().reset(ctx)
        self._l0 = None

    def weights_from_gramian(
        self, gramian: torch.Tensor, losses: torch.Tensor | None = None
    ) -> torch.Tensor:
        g = to_numpy(gramian)
        norms = np.sqrt(np.clip(np.diag(g), 0.0, None))
        nz = norms > 0
        w = np.zeros(len(g))
        w[nz] = 1.0 / norms[nz]
        if self.norm == "mean" and np.any(nz):
            w = w * float(norms[nz].mean())
        if self.alpha > 0:
            if losses is None:
                raise ValueError("gradnormalize with alpha > 0 needs the losses")
            cur = losses.detach().double().cpu()
            if self._l0 is None:
                self._l0 = cur.clone()
            ratio = (cur / self._l0.clamp_min(1e-12)).numpy()
            r = ratio / max(float(ratio.mean()), 1e-12)
            w = w * r**self.alpha
        return to_torch(w, gramian)
