"""Loss weightings with learned or evolving state: ``uncertainty``, ``gradnorm``, ``dwa``,
``rlw`` and ``famo``.

Each keeps its state on the instance; :meth:`reset` re-creates it (and re-seeds any random
generator from ``RunContext.seed``), so a fresh run never inherits another's weights.
Weights are on the *sum* scale: EW is ``w_i = 1``; where a paper's weights sum to 1 they are
multiplied by T (noted per method).
"""

from __future__ import annotations

import torch

from mtldiag.methods._utils import checks
from mtldiag.methods.base import HyperParam, RunContext, WeightingMethod

_EPS = 1e-12


class _Adam:
    """A tiny Adam on a (T,) float64 tensor whose gradient we compute in closed form."""

    def __init__(
        self,
        x: torch.Tensor,
        lr: float,
        weight_decay: float = 0.0,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
    ) -> None:
        self.x, self.lr, self.wd, self.betas, self.eps = x, lr, weight_decay, betas, eps
        self.m = torch.zeros_like(x)
        self.v = torch.zeros_like(x)
        self.t = 0

    def step(self, grad: torch.Tensor) -> None:
        # Same update as torch.optim.Adam (L2 weight decay added to the gradient).
        b1, b2 = self.betas
        g = grad + self.wd * self.x if self.wd else grad
        self.t += 1
        self.m.mul_(b1).add_(g, alpha=1 - b1)
        self.v.mul_(b2).addcmul_(g, g, value=1 - b2)
        mhat = self.m / (1 - b1**self.t)
        vhat = self.v / (1 - b2**self.t)
        self.x.sub_(self.lr * mhat / (vhat.sqrt() + self.eps))


class Uncertainty(WeightingMethod):
    """Homoscedastic-uncertainty weighting (Kendall, Gal & Cipolla, CVPR 2018, eq. 7-10).

    Learns ``s_i = log σ_i²`` per task and minimises ``sum_i exp(-s_i) L_i + s_i``; the task
    weight is ``w_i = exp(-s_i)`` (1 at the start). This is the paper's regression objective
    ``L/(2σ²) + log σ`` multiplied by 2, so the weights sit on the sum scale; the optimum
    ``σ_i² = L_i`` is the paper's.

    :param variant: ``"log"`` — the paper's regulariser ``log σ²``; ``"log1p"`` — the seed's
        ``log(1 + σ²)`` (Su §1.4, from Liebel & Körner 2018), which never goes negative:
        objective ``exp(-s_i) L_i + 2 log(1 + exp(s_i))``.
    :param lr: learning rate of the log-variances' own Adam optimizer (default 1e-2; the paper
        trains σ with the network's optimizer, which mtldiag does not own — LibMTL puts them
        in the model's optimizer instead).

    Differences from the authors / LibMTL: LibMTL starts at ``s = -0.5`` and uses the halved
    objective (weights ``exp(-s)/2``); the seed parameterises σ directly (``0.5/σ² L``).
    """

    name = "uncertainty"
    aliases = ("uw", "kendall", "homoscedastic")
    paper = "Kendall, Gal & Cipolla, CVPR 2018"
    stateful = True
    params = (
        HyperParam("variant", "log", "log (paper) | log1p (seed's log(1+σ²))"),
        HyperParam("lr", 1e-2, "Adam learning rate of the log-variances"),
    )

    def __init__(self, variant: str = "log", lr: float = 1e-2) -> None:
        self.variant = checks.choice("variant", variant, ("log", "log1p"))
        self.lr = checks.real("lr", lr, low=0.0, low_open=True)

    def reset(self, ctx: RunContext) -> None:
        super().reset(ctx)
        self.log_var = torch.zeros(ctx.n_tasks, dtype=torch.float64)
        self._opt = _Adam(self.log_var, self.lr)

    def weights(self, losses: torch.Tensor, step: int) -> torch.Tensor:
        return torch.exp(-self.log_var).to(losses)

    def update(
        self, losses: torch.Tensor, step: int, grad_norms: torch.Tensor | None = None
    ) -> None:
        loss = losses.detach().double().cpu()
        s = self.log_var
        if self.variant == "log":
            grad = 1.0 - loss * torch.exp(-s)  # d/ds [e^-s L + s]
        else:
            grad = 2.0 * torch.sigmoid(s) - loss * torch.exp(-s)  # d/ds [e^-s L + 2 log(1+e^s)]
        self._opt.step(grad)


class GradNorm(WeightingMethod):
    """GradNorm (Chen, Badrinarayanan, Lee & Rabinovich, ICML 2018, Algorithm 1).

    Learned weights ``w_i`` (start at 1) such that each task's weighted gradient norm on the
    shared layer ``W``, ``G_i = w_i ||∇_W L_i||``, tracks ``Ḡ · r_i^α`` where ``Ḡ`` is their
    mean and ``r_i = L̃_i / mean(L̃)`` the relative inverse training rate, ``L̃_i = L_i/L_i(0)``.
    The weights take a gradient step on ``L_grad = sum_i |G_i - Ḡ r_i^α|`` (target treated as
    a constant, as in the paper), then are renormalised to sum to T.

    ``∇_{w_i} L_grad = sign(G_i - target_i) · ||∇_W L_i||`` is computed in closed form from
    the per-task norms the trainer passes to :meth:`update` (no second-order backward).

    :param alpha: restoring-force strength (paper default 1.5 for NYUv2; 0.12 in its toy).
    :param lr: learning rate of the weights' own Adam (default 0.025, the value common
        re-implementations use; the paper does not fix one).
    :param layer: ``"last"`` — W is the last shared layer (paper); ``"all"`` — every shared
        parameter.

    Differences: LibMTL parameterises ``w = T softmax(θ)`` and starts after one epoch; we
    follow the paper (plain weights, clamped positive, renormalised to sum to T).
    """

    name = "gradnorm"
    aliases = ("grad_norm",)
    paper = "Chen et al., ICML 2018 (Alg. 1)"
    stateful = True
    needs_grad_norms = True
    params = (
        HyperParam("alpha", 1.5, "restoring force towards a common training rate"),
        HyperParam("lr", 0.025, "Adam learning rate of the weights"),
        HyperParam("layer", "last", "last (last shared layer) | all (every shared param)"),
    )

    def __init__(self, alpha: float = 1.5, lr: float = 0.025, layer: str = "last") -> None:
        self.alpha = checks.real("alpha", alpha, low=0.0)
        self.lr = checks.real("lr", lr, low=0.0, low_open=True)
        self.layer = checks.choice("layer", layer, ("last", "all"))
        self.grad_norm_layer = self.layer

    def reset(self, ctx: RunContext) -> None:
        super().reset(ctx)
        self.w = torch.ones(ctx.n_tasks, dtype=torch.float64)
        self._opt = _Adam(self.w, self.lr)
        self._l0: torch.Tensor | None = None

    def weights(self, losses: torch.Tensor, step: int) -> torch.Tensor:
        return self.w.to(losses)

    def gradient(self, losses: torch.Tensor, grad_norms: torch.Tensor) -> torch.Tensor:
        """``∇_w L_grad`` for this step (public for tests)."""
        assert self._l0 is not None
        n = grad_norms.double().cpu()
        g = self.w * n  # G_i
        ratio = losses.double().cpu() / self._l0.clamp_min(_EPS)
        r = ratio / ratio.mean().clamp_min(_EPS)
        target = g.mean() * r**self.alpha
        return torch.sign(g - target) * n

    def update(
        self, losses: torch.Tensor, step: int, grad_norms: torch.Tensor | None = None
    ) -> None:
        if self._l0 is None:
            self._l0 = losses.detach().double().cpu().clone()
        if grad_norms is None:
            return
        self._opt.step(self.gradient(losses, grad_norms))
        self.w.clamp_(min=_EPS)
        self.w.mul_(len(self.w) / self.w.sum())


class DynamicWeightAverage(WeightingMethod):
    """Dynamic Weight Average (Liu, Johns & Davison, CVPR 2019 "MTAN", eq. 7).

    ``w_k(t) = T exp(r_k / τ) / sum_i exp(r_i / τ)`` with ``r_k = L_k(t-1) / L_k(t-2)``:
    tasks whose loss falls slowly get more weight. Weights are 1 until two periods are seen.

    :param temp: softmax temperature τ (paper: 2).
    :param period: steps averaged into one "L_k(t)" (default 1). The paper uses the mean
        loss of a whole epoch: set ``period`` to your steps per epoch to match it (and
        LibMTL); weights then change once per period.

    Works for any number of tasks.
    """

    name = "dwa"
    aliases = ("dynamic_weight_average",)
    paper = "Liu, Johns & Davison, CVPR 2019 (MTAN, eq. 7)"
    stateful = True
    params = (
        HyperParam("temp", 2.0, "softmax temperature"),
        HyperParam("period", 1, "steps per averaged loss (paper: one epoch)"),
    )

    def __init__(self, temp: float = 2.0, period: int = 1) -> None:
        self.temp = checks.real("temp", temp, low=0.0, low_open=True)
        self.period = checks.integer("period", period, low=1)

    def reset(self, ctx: RunContext) -> None:
        super().reset(ctx)
        self._history: list[torch.Tensor] = []  # mean loss of each finished period
        self._acc = torch.zeros(ctx.n_tasks, dtype=torch.float64)
        self._n = 0
        self._w = torch.ones(ctx.n_tasks, dtype=torch.float64)

    def weights(self, losses: torch.Tensor, step: int) -> torch.Tensor:
        return self._w.to(losses)

    def update(
        self, losses: torch.Tensor, step: int, grad_norms: torch.Tensor | None = None
    ) -> None:
        self._acc += losses.detach().double().cpu()
        self._n += 1
        if self._n < self.period:
            return
        self._history = (self._history + [self._acc / self._n])[-2:]
        self._acc = torch.zeros_like(self._acc)
        self._n = 0
        if len(self._history) == 2:
            prev2, prev1 = self._history
            r = prev1 / prev2.clamp_min(_EPS)
            self._w = len(r) * torch.softmax(r / self.temp, dim=0)


class RandomLossWeighting(WeightingMethod):
    """Random Loss Weighting (Lin et al., TMLR 2022, "Reasonable effectiveness of random
    weighting", arXiv:2111.10603).

    Every step ``w = T · softmax(λ)``, ``λ ~ N(0, I)``, drawn from a generator seeded with the
    run's seed. The paper's weights sum to 1; the factor T keeps the sum scale
    (``E[w_i] ≈ 1``-ish, EW's step size).
    """

    name = "rlw"
    aliases = ("random", "random_weighting")
    paper = "Lin et al., TMLR 2022 (arXiv:2111.10603)"
    stateful = True

    def reset(self, ctx: RunContext) -> None:
        super().reset(ctx)
        self._gen = torch.Generator().manual_seed(int(ctx.seed))
        self._n = ctx.n_tasks

    def weights(self, losses: torch.Tensor, step: int) -> torch.Tensor:
        lam = torch.randn(self._n, generator=self._gen, dtype=torch.float64)
        return (self._n * torch.softmax(lam, dim=0)).to(losses)


class FAMO(WeightingMethod):
    """Fast Adaptive Multitask Optimization (Liu, Liu, Wang & Liu, NeurIPS 2023, Alg. 1).

    Logits ``ξ`` (start at 0), ``z = softmax(ξ)``; the step minimises
    ``sum_i z_i log(L_i - m_i) / c`` with ``c = sum_i z_i / (L_i - m_i)``, i.e. weights
    ``w_i = T z_i / (c (L_i - m_i))`` (the paper's sum to 1; times T for the sum scale).
    After the step, the logits take an Adam step (lr ``w_lr``, L2 decay ``gamma``) on
    ``δ = log L(t) - log L(t+1)`` pulled back through the softmax, so tasks whose log-loss
    fell least gain weight.

    :param w_lr: logits' learning rate (paper/code 0.025).
    :param gamma: logits' weight decay (paper 1e-3; the code's default is 0.01).
    :param min_losses: the ``m_i`` (default 0: losses bounded below by 0).

    Difference from the authors' code: they re-evaluate the *same* batch after the update
    (one extra forward); mtldiag uses the next step's losses, so no extra forward is spent —
    the logit update for step t is applied when :meth:`weights` is called at step t+1.
    """

    name = "famo"
    aliases = ()
    paper = "Liu et al., NeurIPS 2023 (Alg. 1)"
    stateful = True
    params = (
        HyperParam("w_lr", 0.025, "Adam learning rate of the logits"),
        HyperParam("gamma", 1e-3, "weight decay of the logits"),
        HyperParam("min_losses", 0.0, "lower bound m_i of every loss"),
    )

    def __init__(self, w_lr: float = 0.025, gamma: float = 1e-3, min_losses: float = 0.0) -> None:
        self.w_lr = checks.real("w_lr", w_lr, low=0.0, low_open=True)
        self.gamma = checks.real("gamma", gamma, low=0.0)
        self.min_losses = checks.real("min_losses", min_losses)

    def reset(self, ctx: RunContext) -> None:
        super().reset(ctx)
        self.logits = torch.zeros(ctx.n_tasks, dtype=torch.float64)
        self._opt = _Adam(self.logits, self.w_lr, weight_decay=self.gamma)
        self._prev: torch.Tensor | None = None  # losses of the last step that was taken
        self._pending_step: int | None = None

    def _log_gap(self, losses: torch.Tensor) -> torch.Tensor:
        return torch.log((losses.double().cpu() - self.min_losses).clamp_min(0.0) + 1e-8)

    def weights(self, losses: torch.Tensor, step: int) -> torch.Tensor:
        if self._prev is not None and self._pending_step != step:
            # The logit update of the previous step needs these (next) losses.
            delta = self._log_gap(self._prev) - self._log_gap(losses)
            z = torch.softmax(self.logits, dim=0)
            grad = z * (delta - (z * delta).sum())  # J_softmax(ξ)ᵀ δ
            self._opt.step(grad)
            self._prev = None
        self._pending_step = step
        z = torch.softmax(self.logits, dim=0)
        gap = (losses.double().cpu() - self.min_losses).clamp_min(0.0) + 1e-8
        c = (z / gap).sum()
        return (len(z) * z / (c * gap)).to(losses)

    def update(
        self, losses: torch.Tensor, step: int, grad_norms: torch.Tensor | None = None
    ) -> None:
        self._prev = losses.detach().clone()


ALL = (Uncertainty, GradNorm, DynamicWeightAverage, RandomLossWeighting, FAMO)
