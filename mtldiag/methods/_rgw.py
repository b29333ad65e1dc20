"""RGW: random gradient weighting, ``d = sum_i λ_i g_i`` with random ``λ``."""

from __future__ import annotations

import torch

from mtldiag.methods._utils import checks
from mtldiag.methods.base import GradientMethod, HyperParam, RunContext


class RandomGradientWeighting(GradientMethod):
    """Random Gradient Weighting (Lin, Ye, Xu, Shi & Zhang, TMLR 2022, "Reasonable
    Effectiveness of Random Weighting: A Litmus Test for Multi-Task Learning",
    arXiv:2111.10603 — RGW, beside RLW).

    Every step ``λ = T · softmax(z)``, ``z ~ N(0, I)`` (a generator seeded with the run's
    seed), and the update is ``d = sum_i λ_i g_i`` on the Jacobian — the gradient-space
    counterpart of ``rlw``, which weights the losses with the same draws.

    :param normalize: weight the unit gradients ``g_i / ||g_i||`` (times their mean norm, to
        keep the step's scale) instead of the raw ones. Default false: LibMTL's RGW (commit
        b65bf41, since removed from its tree) weights the raw gradients, which makes it
        equal in distribution to RLW; ``normalize=true`` is the variant that differs.

    The paper's weights sum to 1; the factor T keeps the sum scale (EW's step size).
    """

    name = "rgw"
    aliases = ("random_gradient", "random_grad_weighting")
    paper = "Lin et al., TMLR 2022 (arXiv:2111.10603, RGW)"
    stateful = True  # the random generator
    params = (HyperParam("normalize", False, "weight unit gradients (x mean norm)"),)

    def __init__(self, normalize: bool = False) -> None:
        self.normalize = checks.boolean("normalize", normalize)

    def reset(self, ctx: RunContext) -> None:
        super().reset(ctx)
        self._gen = torch.Generator().manual_seed(int(ctx.seed))

    def draw(self, t: int) -> torch.Tensor:
        """The next step's weights (T,), float64 (public for tests)."""
        z = torch.randn(t, generator=self._gen, dtype=torch.float64)
        return t * torch.softmax(z, dim=0)

    def aggregate(self, jacobian: torch.Tensor, losses: torch.Tensor | None = None) -> torch.Tensor:
        j = jacobian.detach()
        w = self.draw(j.shape[0])
        if self.normalize:
            norms = j.norm(dim=1).double().cpu()
            live = norms > 0
            inv = torch.where(live, 1.0 / norms.clamp_min(1e-300), 0.0)
            mean = norms[live].mean() if live.any() else torch.tensor(0.0, dtype=torch.float64)
            w = w * inv * mean
        return w.to(j) @ j
