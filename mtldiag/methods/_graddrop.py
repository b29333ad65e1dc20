"""GradDrop: keep, per coordinate, only the gradients of one randomly chosen sign."""

from __future__ import annotations

import numpy as np
import torch

from mtldiag.methods._utils import checks
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
    parameters. ``U`` (one per coordinate, in (0, 1]) comes from a NumPy generator seeded with
    the run's seed.
    """

    name = "graddrop"
    aliases = ("grad_drop", "gradient_sign_dropout")
    paper = "Chen et al., NeurIPS 2020 (Alg. 1)"
    stateful = True  # the random generator
    params = (HyperParam("leak", 0.0, "fraction of every gradient always kept, in [0, 1]"),)

    def __init__(self, leak: float = 0.0) -> None:
        self.leak = checks.real("leak", leak, low=0.0, high=1.0)
        self._rng: np.random.Generator | None = None

    def reset(self, ctx: RunContext) -> None:
        super().reset(ctx)
        self._rng = np.random.default_rng(int(ctx.seed))

    def aggregate(self, jacobian: torch.Tensor, losses: torch.Tensor | None = None) -> torch.Tensor:
        if self._rng is None:  # used without reset(): seed 0, deterministic
            self._rng = np.random.default_rng(0)
        # Per coordinate, with pos = Σ_i max(g_i, 0) and total = Σ_i g_i: Σ|g_i| = 2 pos - total,
        # the purity is P = pos / Σ|g_i|, and keeping only the positive (negative) g_i sums them
        # to pos (to neg = total - pos). So P > U is pos > U Σ|g_i|: two matrix-vector products
        # over J and a few P-sized operations, no T x P masks.
        ones = torch.ones(jacobian.shape[0], dtype=jacobian.dtype, device=jacobian.device)
        total = torch.mv(jacobian.T, ones)  # (P,)
        pos = torch.mv(torch.relu(jacobian).T, ones)  # (P,)
        neg = total - pos
        mag = pos - neg
        # U ~ Uniform(0, 1], drawn on the CPU in float32 (the same draws whatever J's dtype and
        # device). With U = 1 - r, r in [0, 1): the only tie P = U is at P = 1, where the
        # paper drops everything and `neg` is 0 too.
        u = torch.from_numpy(self._rng.random(pos.shape[0], dtype=np.float32))
        thr = torch.sub(1.0, u.to(pos.device, pos.dtype)).mul_(mag)
        # kept = pos where P > U, else neg  (= neg + Σ|g| [pos > U Σ|g|])
        kept = torch.addcmul(neg, mag, (pos > thr).to(pos.dtype))
        if self.leak > 0:
            return self.leak * total + (1.0 - self.leak) * kept
        return kept
