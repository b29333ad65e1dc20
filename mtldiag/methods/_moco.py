"""MoCo: MGDA on tracked gradient estimates, with one weights step per training step."""

from __future__ import annotations

import torch

from mtldiag.methods._utils import checks
from mtldiag.methods._utils.convert import REDUCTION_HELP
from mtldiag.methods._utils.qp import project_simplex
from mtldiag.methods.base import GradientMethod, HyperParam, RunContext


class MoCo(GradientMethod):
    """MoCo (Fernando, Shen, Liu, Chaudhury, Murugesan & Chen, ICLR 2023, "Mitigating
    Gradient Bias in Multi-objective Learning: A Provably Convergent Approach", Alg. 1).

    Each task keeps a tracked gradient ``y_i`` (start 0), moved towards the step's gradient:
    ``y_i ← y_i − β_k (y_i − g_i)``; the weights take one projected step on MGDA's objective
    over the tracked gradients, ``λ ← Π_Δ(λ − γ_k (Y Yᵀ + ρI) λ)`` (start ``1/T``), and the
    update is ``d = Yᵀλ``. Step sizes decay as ``β_k = β / k^σβ``, ``γ_k = γ / k^σγ``
    (k = 1, 2, ...).

    :param beta: tracking rate of ``y`` (LibMTL/authors' code default 0.5).
    :param beta_sigma: decay exponent of β (default 0.5).
    :param gamma: step size of λ (default 0.1).
    :param gamma_sigma: decay exponent of γ (default 0.5).
    :param rho: ℓ2 regularisation of λ's update (default 0).
    :param normalize: track ``g_i / ||g_i|| · L_i`` instead of ``g_i`` — the authors' MTL
        code (shared through LibMTL) does; default true. False: the paper's raw gradients.
    :param weights_update: ``simplex`` — the paper's projection Π_Δ (default) | ``softmax``
        — the authors' MTL code and LibMTL, ``λ ← softmax(λ − γ_k (YYᵀ + ρI) λ)``.
    :param reduction: ``sum`` (default: ``T`` times the paper's ``Yᵀλ``) or ``mean``.

    State: the T x P tracked gradients (as large as the Jacobian) and λ.
    """

    name = "moco"
    aliases = ("mo_co",)
    paper = "Fernando et al., ICLR 2023 (MoCo, Alg. 1)"
    stateful = True
    params = (
        HyperParam("beta", 0.5, "tracking rate of the gradient estimates"),
        HyperParam("beta_sigma", 0.5, "decay exponent of beta"),
        HyperParam("gamma", 0.1, "step size of the weights λ"),
        HyperParam("gamma_sigma", 0.5, "decay exponent of gamma"),
        HyperParam("rho", 0.0, "l2 regularisation of λ's update"),
        HyperParam("normalize", True, "track g_i/||g_i||·L_i (authors' code) instead of g_i"),
        HyperParam("weights_update", "simplex", "simplex (paper) | softmax (authors' code)"),
        HyperParam("reduction", "sum", REDUCTION_HELP),
    )

    def __init__(
        self,
        beta: float = 0.5,
        beta_sigma: float = 0.5,
        gamma: float = 0.1,
        gamma_sigma: float = 0.5,
        rho: float = 0.0,
        normalize: bool = True,
        weights_update: str = "simplex",
        reduction: str = "sum",
    ) -> None:
        self.beta = checks.real("beta", beta, low=0.0, high=1.0)
        self.beta_sigma = checks.real("beta_sigma", beta_sigma, low=0.0)
        self.gamma = checks.real("gamma", gamma, low=0.0)
        self.gamma_sigma = checks.real("gamma_sigma", gamma_sigma, low=0.0)
        self.rho = checks.real("rho", rho, low=0.0)
        self.normalize = checks.boolean("normalize", normalize)
        self.weights_update = checks.choice(
            "weights_update", weights_update, ("simplex", "softmax")
        )
        self.reduction = checks.choice("reduction", reduction, ("sum", "mean"))
        self._y: torch.Tensor | None = None
        self._lam: torch.Tensor | None = None
        self._k = 0

    def reset(self, ctx: RunContext) -> None:
        super().reset(ctx)
        self._y = None
        self._lam = None
        self._k = 0

    def aggregate(self, jacobian: torch.Tensor, losses: torch.Tensor | None = None) -> torch.Tensor:
        t = jacobian.shape[0]
        j = jacobian.detach()
        if self._y is None or self._y.shape != j.shape:
            self._y = torch.zeros_like(j)
            self._lam = torch.full((t,), 1.0 / t, dtype=torch.float64)
        assert self._lam is not None
        self._k += 1
        beta_k = self.beta / self._k**self.beta_sigma
        gamma_k = self.gamma / self._k**self.gamma_sigma
        if self.normalize:
            norms = j.norm(dim=1).double().cpu()
            ls = torch.ones(t, dtype=torch.float64) if losses is None else losses.double().cpu()
            scale = torch.where(norms > 0, ls / norms.clamp_min(1e-300), 0.0)
        else:
            scale = torch.ones(t, dtype=torch.float64)
        # y <- y - β_k (y - scale ∘ g) = (1 - β_k) y + β_k scale ∘ g, in place (no T x P copy).
        coef = (beta_k * scale).to(j)[:, None]
        self._y.mul_(1.0 - beta_k).addcmul_(j, coef)
        yy = (self._y @ self._y.T).double().cpu()
        step = self._lam - gamma_k * (
            (yy + self.rho * torch.eye(t, dtype=torch.float64)) @ self._lam
        )
        if self.weights_update == "softmax":
            lam = torch.softmax(step, dim=0)
        else:
            lam = torch.from_numpy(project_simplex(step.numpy()))
        if torch.isfinite(lam).all():
            self._lam = lam
        w = self._lam * (t if self.reduction == "sum" else 1.0)
        return w.to(j) @ self._y
