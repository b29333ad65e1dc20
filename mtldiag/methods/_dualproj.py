"""DualProj: project the summed (or mean) gradient onto the dual cone of the task gradients."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from mtldiag.methods._upgrad import DualConeProjector, PreferenceVector
from mtldiag.methods._utils import checks
from mtldiag.methods._utils.convert import REDUCTION_HELP, to_numpy, to_torch
from mtldiag.methods.base import GramianMethod, HyperParam


class DualProj(PreferenceVector, GramianMethod):
    """DualProj (Quinton & Rey 2024, arXiv:2406.16232 — TorchJD's ``DualProj``; the
    projection is GEM's eq. 11, Lopez-Paz & Ranzato, NeurIPS 2017).

    The combination ``Jᵀu`` (``u = 1``: the sum of the task gradients) is projected onto the
    dual cone ``{x : Jx >= 0}``: ``d = Jᵀv`` with ``v = argmin_{v >= u} vᵀGv``. It conflicts
    with no task (``J d >= 0``), is left unchanged when the sum already conflicts with none,
    and is linear under positive row scaling and permutation invariant.

    Solved exactly in T-space like ``upgrad`` (one non-negative least-squares problem on the
    equilibrated Gramian, with a square-root-factor fallback), where TorchJD runs quadprog on
    a normalised Gramian with ``1e-4`` added to its diagonal (a ~1e-4 relative shift).

    :param reduction: ``sum`` (default: projects ``sum_i g_i``) or ``mean`` (TorchJD's
        default preference ``1/T``: projects the mean gradient).
    :param preference: ``{task: p_i}``, non-negative (default: 1 each): projects
        ``sum_i p_i g_i`` instead, TorchJD's ``pref_vector``; ``mean`` then divides it by T.
        It names every task of the run, so such a run cannot leave out a task without labels.
    """

    name = "dualproj"
    aliases = ("dual_proj", "gem_projection")
    paper = "Quinton & Rey 2024, arXiv:2406.16232 (TorchJD DualProj; GEM eq. 11)"
    params = (
        HyperParam("reduction", "sum", REDUCTION_HELP),
        HyperParam("preference", None, "{task: weight} of the projected sum (default 1 each)"),
    )

    def __init__(self, reduction: str = "sum", preference: Any = None) -> None:
        self.reduction = checks.choice("reduction", reduction, ("sum", "mean"))
        self.preference = checks.preference(self.name, preference)

    def weights_from_gramian(
        self, gramian: torch.Tensor, losses: torch.Tensor | None = None
    ) -> torch.Tensor:
        g = to_numpy(gramian, self.precision(gramian))
        n = len(g)
        pref = self._preference_vector()
        u = np.ones(n) if pref is None else pref.astype(np.float64)
        if self.reduction == "mean":
            u = u / max(n, 1)
        return to_torch(DualConeProjector(g).project(u), gramian)
