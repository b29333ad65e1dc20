"""UPGrad: project every task gradient onto the dual cone of all of them, then average."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from mtldiag.methods._utils import checks
from mtldiag.methods._utils.convert import REDUCTION_HELP, ZERO_ROW, to_numpy, to_torch
from mtldiag.methods._utils.lsq import factor, nnls, nnls_gram
from mtldiag.methods._utils.qp import nonneg_qp
from mtldiag.methods.base import GramianMethod, HyperParam, MethodError, RunContext


class PreferenceVector:
    """A ``preference={task: p_i}`` hyper-parameter (TorchJD's ``pref_vector``), ordered by the
    run's tasks at ``reset``; UPGrad and DualProj share it. ``self.preference`` is set (and
    checked) by the class's ``__init__``."""

    name: str
    preference: dict[str, float] | None

    @property
    def keeps_task_state(self) -> bool:
        return self.preference is not None  # its weights are indexed by task

    def reset(self, ctx: RunContext) -> None:
        super().reset(ctx)  # type: ignore[misc]
        self._pref = (
            None
            if self.preference is None
            else np.array(checks.preference_vector(self.name, self.preference, ctx.tasks))
        )

    def _preference_vector(self) -> np.ndarray | None:
        if self.preference is None:
            return None
        if not hasattr(self, "_pref"):  # the vector's order is the run's task order
            raise MethodError(f"{self.name} with a preference needs reset(ctx) first.")
        return self._pref


class UPGrad(PreferenceVector, GramianMethod):
    """UPGrad (Quinton & Rey, 2024, "Jacobian Descent for Multi-Objective Optimization",
    arXiv:2406.16232, §3 — TorchJD's ``UPGrad``).

    Each gradient ``g_i`` is projected onto the dual cone ``{x : Jx >= 0}``; in T-space the
    projection is ``Jᵀv_i`` with ``v_i = argmin_{v >= e_i} vᵀGv``. The update is
    ``sum_i Jᵀv_i``, so ``w = sum_i v_i``: it conflicts with no task (``J d >= 0``).

    Each of the T problems is solved as a non-negative least-squares problem on a square-root
    factor of ``G`` (Lawson-Hanson; exact up to rounding),
    instead of TorchJD's quadprog on a normalised and regularised Gramian (which shifts its
    answer by ~1e-4 relative). A gradient that conflicts with no task is left as it is.

    :param reduction: ``sum`` (default) or ``mean`` (TorchJD's default preference 1/T).
    :param preference: ``{task: p_i}``, non-negative (default: 1 each): the update is
        ``sum_i Jᵀv_i(p_i e_i) = sum_i p_i Jᵀv_i`` (a cone projection is positively
        homogeneous), TorchJD's ``pref_vector``; ``mean`` then divides it by T. It names every
        task of the run, so such a run cannot leave out a task without labels.
    """

    name = "upgrad"
    aliases = ("up_grad", "jd", "jacobian_descent")
    paper = "Quinton & Rey 2024, arXiv:2406.16232 (TorchJD UPGrad)"
    params = (
        HyperParam("reduction", "sum", REDUCTION_HELP),
        HyperParam("preference", None, "{task: weight} of the combination (default 1 each)"),
    )

    def __init__(self, reduction: str = "sum", preference: Any = None) -> None:
        self.reduction = checks.choice("reduction", reduction, ("sum", "mean"))
        self.preference = checks.preference(self.name, preference)

    def weights_from_gramian(
        self, gramian: torch.Tensor, losses: torch.Tensor | None = None
    ) -> torch.Tensor:
        g = to_numpy(gramian, self.precision(gramian))
        rows = project_rows(g)
        pref = self._preference_vector()
        w = rows.sum(axis=0) if pref is None else pref @ rows
        if self.reduction == "mean":
            w = w / len(w)
        return to_torch(w, gramian)


def project_rows(g: np.ndarray) -> np.ndarray:
    """Row i: ``v_i = argmin_{v >= e_i} vᵀGv`` (the dual-cone projection of ``g_i``)."""
    n = len(g)
    solver = DualConeProjector(g)
    return np.stack([solver.project(np.eye(n)[i]) for i in range(n)]) if n else np.eye(0)


class DualConeProjector:
    """Projections onto the dual cone ``{x : Jx >= 0}`` of one Gramian, in T-space.

    ``project(u)`` returns ``v = argmin_{v >= u} vᵀGv`` for ``u >= 0``: then ``Jᵀv`` is the
    Euclidean projection of ``Jᵀu`` onto the cone (Quinton & Rey 2024, Prop. 1). With
    ``v = u + x``, ``x >= 0`` solves ``min ½ xᵀGx + (Gu)ᵀx``, a non-negative least-squares
    problem: Lawson-Hanson on the equilibrated G; if its KKT check fails (near-singular G),
    the same on a square-root factor by least squares, then the active set on G.
    """

    def __init__(self, g: np.ndarray) -> None:
        self.g = g
        n = len(g)
        diag = np.clip(np.diag(g), 0.0, None)
        top = float(diag.max()) if n else 0.0
        # Equilibrate (unit diagonal) so the fast T-space solve works at every gradient
        # scale; a zero gradient (zero row) is left out of every cone constraint's solution.
        self.live = diag > ZERO_ROW * top if top > 0 else np.zeros(n, dtype=bool)
        self.norms = np.sqrt(np.where(self.live, diag, 1.0))
        self.gs = g / np.outer(self.norms, self.norms)
        self._pts: np.ndarray | None = None

    def project(self, u: np.ndarray) -> np.ndarray:
        g, live, norms = self.g, self.live, self.norms
        u = np.asarray(u, dtype=np.float64)
        if not np.any(live):
            return u.copy()
        gu = g @ u
        if np.all(gu >= 0):
            return u.copy()  # Jᵀu conflicts with no task: it is its own projection
        us = u * norms  # the equilibrated problem's u
        y, ok = nnls_gram(self.gs[np.ix_(live, live)], self.gs[live] @ us)
        x = np.zeros(len(u))
        x[live] = y / norms[live]
        if not ok:
            if self._pts is None:
                self._pts = factor(g)  # rows p_k with p_k·p_l = G_kl
            pts = self._pts
            x, ok = nnls(pts.T, -(u @ pts))
            if not ok:
                x = nonneg_qp(g, gu)
        return u + x
