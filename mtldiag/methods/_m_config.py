"""M-ConFIG: ConFIG on per-task momenta, one task's gradient per step."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import torch

from mtldiag.engine.gramian import small_gram
from mtldiag.methods._config import ConFIG
from mtldiag.methods._utils import checks
from mtldiag.methods.base import GradientMethod, HyperParam, RunContext


class MConFIG(GradientMethod):
    """M-ConFIG (Liu, Chu & Thuerey, ICLR 2025, "ConFIG: Towards Conflict-free Training of
    Physics Informed Neural Networks", ``conflictfree``'s PseudoMomentumOperator):
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
    State: the T x P momenta, their T x T Gramian and four P-vectors.
    """

    name = "m_config"
    aliases = ("mconfig", "momentum_config")
    paper = "Liu, Chu & Thuerey, ICLR 2025 (M-ConFIG)"
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
        self._m: torch.Tensor | None = None  # (T, P) first momenta, updated in place
        self._gram: torch.Tensor | None = None  # (T, T) float64 M Mᵀ, row k renewed with m_k
        self._seen: list[int] = []  # n_i: the steps that took task i's gradient
        self._s: torch.Tensor | None = None  # (P,) second moment of the pseudo-gradient
        self._c: torch.Tensor | None = None  # (2, P): this and the last step's q_t c
        self._fake: torch.Tensor | None = None  # (P,) scratch: the pseudo-gradient
        self._t = 0

    def reset(self, ctx: RunContext) -> None:
        super().reset(ctx)
        self._config.reset(ctx)  # ConFIG's rank decisions at the run's precision
        self._clear()

    def task_of_step(self, step: int) -> int:
        """The task whose loss the step core back-propagates at ``step``: ``step mod T``."""
        return step % self.ctx.n_tasks

    def task_direction(
        self,
        task: int,
        grad: torch.Tensor,
        losses: torch.Tensor | None = None,
        out: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Take task ``task``'s flat gradient (P,) into its momentum; the (P,) direction.

        ``grad`` is read, not kept. ``out``: a (P,) tensor to write the direction into (it
        may be ``grad`` itself: the step core's reused buffer); else a fresh one.
        """
        return self._advance([task], [grad], losses, out)

    def aggregate(self, jacobian: torch.Tensor, losses: torch.Tensor | None = None) -> torch.Tensor:
        return self._advance(list(range(jacobian.shape[0])), list(jacobian), losses, None)

    def _advance(
        self,
        tasks: Sequence[int],
        grads: Sequence[torch.Tensor],
        losses: torch.Tensor | None,
        out: torch.Tensor | None,
    ) -> torch.Tensor:
        g0 = grads[0].detach()
        if self._m is None:
            n = self.ctx.n_tasks if hasattr(self, "ctx") else len(grads)
            # All state allocated once: a P-sized allocation per step costs as much as the
            # arithmetic (page faults), and this method's point is the price of a plain step.
            self._m = g0.new_zeros((n, g0.numel()))
            self._gram = torch.zeros(n, n, dtype=torch.float64)
            self._seen = [0] * n
            self._s = torch.zeros_like(g0)
            self._c = g0.new_zeros((2, g0.numel()))
            self._fake = torch.empty_like(g0)
        m, gram, s = self._m, self._gram, self._s
        assert gram is not None and s is not None and self._c is not None
        b1, b2 = self.beta_1, self.beta_2
        for k, g in zip(tasks, grads, strict=True):
            self._seen[k] += 1
            m[k].lerp_(g.detach(), 1.0 - b1)  # m_k <- b1 m_k + (1 - b1) g_k
        if len(tasks) == 1:  # only row and column k of M Mᵀ changed
            row = torch.mv(m, m[tasks[0]]).double().cpu()
            gram[tasks[0], :] = row
            gram[:, tasks[0]] = row
        else:
            gram.copy_(small_gram(m).double().cpu())
        if min(self._seen) == 0:  # not every task seen yet: no update (as the package)
            return torch.zeros_like(g0) if out is None else out.zero_()
        self._t += 1
        t = self._t
        # ConFIG (the `config` method's rule) on the bias-corrected momenta m̂ = D M,
        # D = diag(1 / (1 - b1^n_i)), through their Gramian D (M Mᵀ) D: no T x P copy of m̂.
        corr = torch.tensor([1.0 / (1.0 - b1**n) for n in self._seen], dtype=torch.float64)
        w = self._config.weights_from_gramian(gram * torch.outer(corr, corr), losses).cpu()
        # Written with q_t = sqrt(1 - b2^t), e = q_t c: ŝ = s / q_t², d = e / (√s + 1e-8 q_t),
        # and the pseudo-gradient (fake_m - b1 fake_m_prev) / (1 - b1), fake_m = c (1 - b1^t),
        # is (a_t / q_t) (e - r e_prev): six element-wise passes after the one over M.
        q = (1.0 - b2**t) ** 0.5
        a = (1.0 - b1**t) / (1.0 - b1)
        prev, e = self._c[(t + 1) % 2], self._c[t % 2]
        torch.mv(m.T, (w * corr * q).to(m), out=e)
        fake = e
        if t > 1:
            q_prev, a_prev = (1.0 - b2 ** (t - 1)) ** 0.5, (1.0 - b1 ** (t - 1)) / (1.0 - b1)
            fake = torch.sub(e, prev, alpha=b1 * a_prev * q / (a * q_prev), out=self._fake)
        s.mul_(b2).addcmul_(fake, fake, value=(1.0 - b2) * (a / q) ** 2)
        d = torch.sqrt(s, out=out) if out is not None else torch.sqrt(s)
        return torch.div(e, d.add_(1e-8 * q), out=d)
