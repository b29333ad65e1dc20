"""STCH: smooth Tchebycheff scalarisation of the (log, nadir-normalised) task losses."""

from __future__ import annotations

import torch

from mtldiag.methods._utils import checks
from mtldiag.methods.base import HyperParam, RunContext, WeightingMethod


class SmoothTchebycheff(WeightingMethod):
    """Smooth Tchebycheff scalarisation (Lin, Zhang, Yang, Zhang, Liu & Zhang, ICML 2024,
    "Smooth Tchebycheff Scalarization for Multi-Objective Optimization", eq. 9 and §6.3).

    After a warm-up, the objective is ``T μ log sum_i exp(z_i / μ)`` with
    ``z_i = log(L_i / n_i)``: a smooth maximum (μ → 0: Tchebycheff's max) of the log-losses
    normalised by a nadir point ``n`` — the form of the authors' multi-task code and LibMTL.
    Its weights are ``w_i = T softmax(z/μ)_i / L_i``: the worst task (relative to its nadir
    loss) dominates. During the warm-up the objective is ``sum_i log L_i`` (``w_i = 1/L_i``).

    :param mu: smoothing μ > 0 (paper/LibMTL default 1.0).
    :param warmup: warm-up length in steps (default 100). The nadir ``n_i`` is the mean loss
        over the warm-up's last fifth (at least one step). LibMTL counts epochs: 4 warm-up
        epochs, then one epoch averaging the nadir; mtldiag does not know the epoch length,
        so set ``warmup`` to about 5 epochs' steps to match. ``warmup=0``: the first step's
        losses are the nadir.
    """

    name = "stch"
    aliases = ("smooth_tchebycheff", "tchebycheff")
    paper = "Lin et al., ICML 2024 (STCH, eq. 9)"
    stateful = True
    params = (
        HyperParam("mu", 1.0, "smoothing μ of the max (→0: Tchebycheff)"),
        HyperParam("warmup", 100, "log-loss steps before STCH; nadir from their last fifth"),
    )

    def __init__(self, mu: float = 1.0, warmup: int = 100) -> None:
        self.mu = checks.real("mu", mu, low=0.0, low_open=True)
        self.warmup = checks.integer("warmup", warmup, low=0)

    def reset(self, ctx: RunContext) -> None:
        super().reset(ctx)
        self._acc: torch.Tensor | None = None
        self._count = 0
        self.nadir: torch.Tensor | None = None

    def weights(self, losses: torch.Tensor, step: int) -> torch.Tensor:
        ls = losses.detach().double().cpu().clamp_min(1e-20)
        if self.nadir is None and step >= self.warmup:
            nadir = ls.clone() if self._acc is None else self._acc / self._count
            self.nadir = nadir.clamp_min(1e-20)  # a zero mean loss would divide by 0
        if self.nadir is None:
            return (1.0 / ls).to(losses)
        z = torch.log(ls / self.nadir)
        t = len(ls)
        w = t * torch.softmax(z / self.mu, dim=0) / ls
        return w.to(losses)

    def update(
        self, losses: torch.Tensor, step: int, grad_norms: torch.Tensor | None = None
    ) -> None:
        if self.nadir is not None:
            return
        start = self.warmup - max(1, self.warmup // 5)
        if start <= step < self.warmup:
            ls = losses.detach().double().cpu()
            self._acc = ls.clone() if self._acc is None else self._acc + ls
            self._count += 1
