"""DB-MTL: log-transformed losses, gradient magnitudes balanced to the largest task's."""

from __future__ import annotations

import torch

from mtldiag.methods._utils import checks
from mtldiag.methods.base import GradientMethod, HyperParam, MethodError, RunContext


class DBMTL(GradientMethod):
    """Dual-Balancing MTL (Lin, Jiang, Ye, Zhang, Kwok, Zhang & Ye, 2023, "Dual-Balancing for
    Multi-Task Learning", arXiv:2308.12029, Alg. 1).

    Loss-scale balancing: each task's loss is replaced by ``log(L_i + ε)``, whose gradient is
    ``g_i / (L_i + ε)``. Gradient-magnitude balancing: an exponential moving average
    ``ĝ_i ← β_k ĝ_i + (1 − β_k) ∇log(L_i + ε)`` (start 0, ``β_k = β / k^σ``) is tracked per
    task, and the update is ``d = sum_i (max_j ||ĝ_j|| / ||ĝ_i||) ĝ_i``: every task
    contributes with the largest task's gradient norm.

    :param beta: EMA rate of the gradients (paper/LibMTL default 0.9).
    :param beta_sigma: decay exponent of β (default 0: a constant rate).

    On the sum scale already (T equal tasks give ``T ĝ``). Differences: ``ε = 1e-8`` as the
    authors; a task with a zero tracked gradient gets weight 0 (LibMTL divides by
    ``||ĝ_i|| + 1e-8``, which differs only for norms near 1e-8). State: the T x P averages.
    """

    name = "db_mtl"
    aliases = ("dbmtl", "dual_balancing")
    paper = "Lin et al. 2023, arXiv:2308.12029 (DB-MTL, Alg. 1)"
    stateful = True
    params = (
        HyperParam("beta", 0.9, "EMA rate of the log-loss gradients"),
        HyperParam("beta_sigma", 0.0, "decay exponent of beta"),
    )

    def __init__(self, beta: float = 0.9, beta_sigma: float = 0.0) -> None:
        self.beta = checks.real("beta", beta, low=0.0, high=1.0)
        self.beta_sigma = checks.real("beta_sigma", beta_sigma, low=0.0)
        self._buf: torch.Tensor | None = None
        self._k = 0

    def reset(self, ctx: RunContext) -> None:
        super().reset(ctx)
        self._buf = None
        self._k = 0

    def aggregate(self, jacobian: torch.Tensor, losses: torch.Tensor | None = None) -> torch.Tensor:
        if losses is None:
            raise MethodError("db_mtl needs the task losses (it balances log-losses).")
        j = jacobian.detach()
        if self._buf is None or self._buf.shape != j.shape:
            self._buf = torch.zeros_like(j)
        self._k += 1
        beta_k = self.beta / self._k**self.beta_sigma
        scale = 1.0 / (losses.detach().to(j.device, torch.float64) + 1e-8)  # ∇log(L+ε) = g/(L+ε)
        # ĝ <- β_k ĝ + (1 - β_k) g / (L + ε), in place (no T x P copy).
        self._buf.mul_(beta_k).addcmul_(j, ((1.0 - beta_k) * scale).to(j)[:, None])
        norms = self._buf.norm(dim=1).double()
        top = norms.max()
        alpha = torch.where(norms > 0, top / norms.clamp_min(1e-300), 0.0)
        return alpha.to(j) @ self._buf
