"""M-ConFIG: ConFIG on per-task momenta, one task's gradient per step."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import torch

from mtldiag.methods._config import ConFIG
from mtldiag.methods._utils import checks
from mtldiag.methods.base import GradientMethod, HyperParam, RunContext


class MConFIG(GradientMethod):
    """M-ConFIG (Liu, Chu & Thuerey, ICLR 2025, "ConFIG: Towards Conflict-free Training of
    Physics Informed Neural Networks", Alg. 2 — ``conflictfree``'s PseudoMomentumOperator):
    one backward per step, of task ``k = step mod T``, and ConFIG on the tasks' momenta.

    Each task keeps a first momentum ``m_i ← β₁ m_i + (1 − β₁) g_i``, updated on the steps
    that take its gradient (``n_i`` of them). The direction is 0 until every task has been
    seen once; from then on, with ``t`` counting those steps:
    ``m̂_i = m_i / (1 − β₁^n_i)``, ``c = ConFIG(m̂_1..m̂_T)`` (the ``config`` method's rule on
    the T x P momentum matrix), a pseudo-gradient ``ĝ = (c (1 − β₁^t) − β₁ c_prev (1 −
    β₁^(t−1))) / (1 − β₁)`` for an Adam-like second moment ``s ← β₂ s + (1 − β₂) ĝ²``,
    ``ŝ = s / (1 − β₂^t)``, and ``d = c / (√ŝ + 1e-8)``.

    :param beta_1: the momenta's rate (default 0.9).
    :param beta_2: the second moment's rate (default 0.999).

    The step core back-propagates one loss per step (``tasks_per_step = 1``); an instrumented
    step takes all T for its metrics but feeds the method row ``k`` only, so training is the
    same with or without the diagnosis. ``aggregate(J)`` (user code) updates every task's
    momentum with its row, as the package's call with all indexes does. The direction is
    normalised element-wise (Adam-like) inside: the paper advises SGD as the optimizer.
    ConFIG's ``reduction`` has no use here (the normalisation cancels the direction's scale).
    State: T momenta and two P-vectors.
    """

    name = "m_config"
    aliases = ("mconfig", "momentum_config")
    paper = "Liu, Chu & Thuerey, ICLR 2025 (M-ConFIG, Alg. 2)"
    stateful = True
    keeps_task_state = True  # the momenta are per task: no step may leave a task out
    tasks_per_step: ClassVar[int | None] = 1
    params = (
        HyperParam("beta_1", 0.9, "rate of each task's first momentum"),
        HyperParam("beta_2", 0.999, "rate of the second moment of the pseudo-gradient"),
    )

    def __init__(self, beta_1: float = 0.9, beta_2: float = 0.999) -> None:
        self.beta_1 = checks.real("beta_1", beta_1, low=0.0, high=1.0, high_open=True)
        self.beta_2 = checks.real("beta_2", beta_2, low=0.0, high=1.0, high_open=True)
        self._config = ConFIG()
        self._clear()

    def _clear(self) -> None:
        self._m: list[torch.Tensor] | None = None
        self._seen: list[int] = []
        self._s: torch.Tensor | None = None
        self._fake_m: torch.Tensor | None = None
        self._t = 0

    def reset(self, ctx: RunContext) -> None:
        super().reset(ctx)
        self._config.reset(ctx)  # ConFIG's rank decisions at the run's precision
        self._clear()

    def task_of_step(self, step: int) -> int:
        """The task whose loss the step core back-propagates at ``step``: ``step mod T``."""
        return step % self.ctx.n_tasks

    def task_direction(
        self, task: int, grad: torch.Tensor, losses: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Take task ``task``'s flat gradient (P,) into its momentum; the (P,) direction."""
        return self._advance([task], [grad], losses)

    def aggregate(self, jacobian: torch.Tensor, losses: torch.Tensor | None = None) -> torch.Tensor:
        return self._advance(list(range(jacobian.shape[0])), list(jacobian), losses)

    def _advance(
        self,
        tasks: Sequence[int],
        grads: Sequence[torch.Tensor],
        losses: torch.Tensor | None,
    ) -> torch.Tensor:
        g0 = grads[0].detach()
        if self._m is None:
            n = self.ctx.n_tasks if hasattr(self, "ctx") else len(grads)
            self._m = [torch.zeros_like(g0) for _ in range(n)]
            self._seen = [0] * n
            self._s = torch.zeros_like(g0)
            self._fake_m = torch.zeros_like(g0)
        assert self._s is not None and self._fake_m is not None
        b1, b2 = self.beta_1, self.beta_2
        for k, g in zip(tasks, grads, strict=True):
            self._seen[k] += 1
            self._m[k] = self._m[k].mul(b1).add_(g.detach(), alpha=1.0 - b1)
        if min(self._seen) == 0:
            return torch.zeros_like(g0)  # not every task seen yet: no update (as the package)
        self._t += 1
        m_hat = torch.stack([m / (1.0 - b1**n) for m, n in zip(self._m, self._seen, strict=True)])
        c = self._config.aggregate(m_hat, losses)
        fake_m = c * (1.0 - b1**self._t)
        fake_grad = (fake_m - b1 * self._fake_m) / (1.0 - b1)
        self._fake_m = fake_m
        self._s = self._s.mul(b2).addcmul_(fake_grad, fake_grad, value=1.0 - b2)
        s_hat = self._s / (1.0 - b2**self._t)
        return c / (s_hat.sqrt() + 1e-8)
