"""GLS: the geometric mean of the task losses."""

from __future__ import annotations

import torch

from mtldiag.methods._utils import checks
from mtldiag.methods._utils.convert import REDUCTION_HELP
from mtldiag.methods.base import HyperParam, WeightingMethod


class GeometricLoss(WeightingMethod):
    """Geometric Loss Strategy (Chennupati, Sistu, Yogamani & Rawashdeh, CVPR Workshops 2019,
    "MultiNet++", eq. 4).

    The objective is the geometric mean ``(prod_i L_i)^(1/T)``, whose gradient weights task
    i by ``∂/∂L_i = GM / (T L_i)``: tasks with small losses weigh more, and the direction is
    invariant to rescaling any loss.

    :param reduction: ``sum`` (default: ``w_i = GM / L_i``, the gradient of ``T · GM``, EW for
        equal losses) or ``mean`` (the paper's ``GM / (T L_i)``, as LibMTL's GLS objective).

    ``GM`` is computed as ``exp(mean log L_i)`` (no overflow of the product); losses are
    floored at 1e-12 (GLS needs positive losses).
    """

    name = "gls"
    aliases = ("geometric", "geometric_loss")
    paper = "Chennupati et al., CVPRW 2019 (MultiNet++, GLS)"
    params = (HyperParam("reduction", "sum", REDUCTION_HELP),)

    def __init__(self, reduction: str = "sum") -> None:
        self.reduction = checks.choice("reduction", reduction, ("sum", "mean"))

    def weights(self, losses: torch.Tensor, step: int) -> torch.Tensor:
        ls = losses.detach().double().clamp_min(1e-12)
        gm = torch.exp(torch.log(ls).mean())
        w = gm / ls
        if self.reduction == "mean":
            w = w / len(ls)
        return w.to(losses)
