"""GradDrop: keep, per coordinate, only the gradients of one randomly chosen sign."""

from __future__ import annotations

import torch

from mtldiag.methods import _check
from mtldiag.methods.base import GradientMethod, HyperParam, RunContext


class GradDrop(GradientMethod):
    """GradDrop (Chen, Ngiam, Huang, Luong, Kretzschmar, Chai & Anguelov, NeurIPS 2020, "Just
    Pick a Sign", Alg. 1 lines 10-15).

    Per coordinate, the positive sign purity ``P = ½ (1 + sum_i g_i / sum_i |g_i|)``; draw
    ``U ~ Uniform(0, 1)``; keep ``g_i`` where ``(P > U and g_i > 0) or (P < U and g_i < 0)``;
    ``d = sum_i (leak + (1 - leak) M_i) g_i``. Needs the whole Jacobian (not only G).

    :param leak: fraction of every gradient that passes regardless of the mask, in [0, 1]
        (default 0; LibMTL's default too).

    Difference from the paper: it applies the mask to gradients with respect to a shared
    activation (summed over the batch); here, as TorchJD, to the gradients of the shared
    parameters. ``U`` comes from a generator seeded with the run's seed.
    """

    name = "graddrop"
    aliases = ("grad_drop", "gradient_sign_dropout")
    paper = "Chen et al., NeurIPS 2020 (Alg. 1)"
    stateful = True  # the random generator
    cost = "T"
    params = (HyperParam("leak", 0.0, "fraction of every gradient always kept, in [0, 1]"),)

    def __init__(self, leak: float = 0.0) -> None:
        self.leak = _check.real("leak", leak, low=0.0, high=1.0)
        self._gen: torch.Generator | None = None

    def reset(self, ctx: RunContext) -> None:
        super().reset(ctx)
        self._gen = torch.Generator().manual_seed(int(ctx.seed))

    def aggregate(
        self, jacobian: torch.Tensor, losses: torch.Tensor | None = None
    ) -> torch.Tensor:
        if self._gen is None:
            self._gen = torch.Generator().manual_seed(0)
        # Keeping only the positive g_i of a coordinate sums them to (Σg + Σ|g|)/2, only the
        # negative ones to (Σg - Σ|g|)/2: two reductions over J instead of T x P masks.
        total = jacobian.sum(dim=0)  # (P,)
        mag = torch.linalg.vector_norm(jacobian, ord=1, dim=0)  # (P,) Σ_i |g_i|, no T x P temp
        purity = 0.5 * (1.0 + total / mag.clamp_min(torch.finfo(mag.dtype).tiny))
        # Drawn in float32 on the CPU: the same draws whatever J's dtype and device.
        u = torch.rand(purity.shape, generator=self._gen, dtype=torch.float32)
        u = u.to(purity.device, purity.dtype)
        pos = 0.5 * (total + mag)
        kept = torch.where(purity > u, pos, torch.where(purity < u, pos - mag, 0.0))
        if self.leak > 0:
            return self.leak * total + (1.0 - self.leak) * kept
        return kept
