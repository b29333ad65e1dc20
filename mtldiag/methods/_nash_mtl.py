"""Nash-MTL: the Nash bargaining solution, ``G α = 1/α``, solved in torch-free NumPy."""

from __future__ import annotations

import numpy as np
import torch

from mtldiag.methods._utils import checks
from mtldiag.methods._utils.convert import to_numpy, to_torch
from mtldiag.methods.base import GramianMethod, HyperParam, RunContext


def nash_weights(
    g: np.ndarray, start: np.ndarray | None = None, max_iter: int = 100, tol: float = 1e-10
) -> tuple[np.ndarray, bool]:
    """Solve ``G α = 1/α``, ``α > 0``, by damped Newton on a convex function.

    ``G α = 1/α`` is the stationarity condition of ``f(α) = ½ αᵀGα - sum_i log α_i``,
    strictly convex on ``α > 0`` (Hessian ``G + diag(1/α²)``). Newton with a backtracking line
    search that keeps ``α > 0`` converges quadratically; we stop when
    ``max_i |α_i (Gα)_i - 1| < tol``. ``G`` is first divided by its Frobenius norm, as the
    authors' code does (``α`` is rescaled back). There is no solution when some non-negative
    combination of gradients vanishes (e.g. a zero or two exactly opposite gradients): ``f``
    is then unbounded below and we report failure.
    """
    n = len(g)
    nf = float(np.linalg.norm(g))
    if not np.isfinite(nf) or nf == 0.0:
        return np.ones(n), False
    gn = g / nf
    a = np.asarray(start, dtype=np.float64) * np.sqrt(nf) if start is not None else None
    if a is None or not np.all(np.isfinite(a)) or np.any(a <= 0):
        a = 1.0 / np.sqrt(np.clip(np.diag(gn), 1e-12, None))
    else:
        # Rescale the warm start so that αᵀGα = T (true at the solution).
        q = float(a @ gn @ a)
        a = a * np.sqrt(n / q) if q > 0 else 1.0 / np.sqrt(np.clip(np.diag(gn), 1e-12, None))

    def f(x: np.ndarray) -> float:
        return 0.5 * float(x @ gn @ x) - float(np.sum(np.log(x)))

    fa = f(a)
    for _ in range(max_iter):
        ga = gn @ a
        if np.max(np.abs(a * ga - 1.0)) < tol:
            return a / np.sqrt(nf), True
        grad = ga - 1.0 / a
        hess = gn + np.diag(1.0 / a**2)
        try:
            step = -np.linalg.solve(hess, grad)
        except np.linalg.LinAlgError:
            return a / np.sqrt(nf), False
        if not np.all(np.isfinite(step)):
            return a / np.sqrt(nf), False
        t = 1.0
        neg = step < 0
        if np.any(neg):  # stay strictly inside α > 0
            t = min(1.0, 0.99 * float(np.min(-a[neg] / step[neg])))
        slope = float(grad @ step)
        while True:
            cand = a + t * step
            fc = f(cand)
            if fc <= fa + 1e-4 * t * slope or t < 1e-12:
                break
            t *= 0.5
        if t < 1e-12 or not np.isfinite(fc):
            return a / np.sqrt(nf), False
        a, fa = cand, fc
        if np.max(a) > 1e12 or np.min(a) < 1e-12:  # running off: unbounded below
            return a / np.sqrt(nf), False
    ok = bool(np.max(np.abs(a * (gn @ a) - 1.0)) < 1e-6)
    return a / np.sqrt(nf), ok


class NashMTL(GramianMethod):
    """Nash-MTL (Navon, Shamsian, Achituve, Maron, Kawaguchi, Chechik & Fetaya, ICML 2022,
    "Multi-Task Learning as a Bargaining Game", Alg. 1).

    The weights solve ``G α = 1/α`` (every task's gain ``g_iᵀd = 1/α_i``); ``d = Jᵀα`` has
    ``||d||² = T`` whatever the gradients' scale, and the direction is invariant to rescaling
    any task's loss. The authors approximate the solution with a sequence of cvxpy/ECOS
    convex problems (``optim_niter = 20``); mtldiag solves the same equation by damped
    Newton in NumPy (:func:`nash_weights`), warm-started from the previous step.

    Robustness: when the warm-started solve fails it is retried from the cold start; when
    that fails too (no solution, e.g. a zero or two exactly opposite gradients), the previous
    weights are kept — as the authors' code does on a
    solver error — and :attr:`warnings` says on how many steps (the trainer copies it into the
    run's ``warnings`` in ``summary.json``, and ``mtldiag profile`` prints it).

    :param max_norm: clip ``||d||`` to this value (authors' code default 1.0, applied there
        with ``clip_grad_norm_`` on the shared parameters; 0 disables). Because
        ``||d|| = sqrt(T)`` before clipping, the default makes every step's shared update
        unit-norm.
    :param update_weights_every: recompute the weights every k steps, reusing them in
        between (authors' default 1; the paper suggests larger k as a speed-up — mtldiag
        still computes J every step, so k > 1 saves only the tiny solve).
    :param max_iter: Newton iterations per solve (default 100; typically < 10 are used).
    """

    name = "nash_mtl"
    aliases = ("nashmtl", "nash")
    paper = "Navon et al., ICML 2022 (Alg. 1)"
    stateful = True
    keeps_task_state = True
    params = (
        HyperParam("max_norm", 1.0, "clip the direction's norm (0: off)"),
        HyperParam("update_weights_every", 1, "recompute the weights every k steps"),
        HyperParam("max_iter", 100, "Newton iterations per solve"),
    )

    def __init__(
        self, max_norm: float = 1.0, update_weights_every: int = 1, max_iter: int = 100
    ) -> None:
        self.max_norm = checks.real("max_norm", max_norm, low=0.0)
        self.update_weights_every = checks.integer(
            "update_weights_every", update_weights_every, low=1
        )
        self.max_iter = checks.integer("max_iter", max_iter, low=1)
        self._alpha: np.ndarray | None = None
        self._calls = 0
        self.failed_steps = 0
        self._first_failure = 0

    def reset(self, ctx: RunContext) -> None:
        super().reset(ctx)
        self._alpha = None
        self._calls = 0
        self.failed_steps = 0
        self._first_failure = 0
        self.last_converged = True

    @property
    def warnings(self) -> list[str]:
        """One line summing up the failed solves of the run so far (empty if none)."""
        if not self.failed_steps:
            return []
        return [
            f"nash_mtl: the bargaining system G α = 1/α had no solution or did not converge "
            f"on {self.failed_steps} of {self._calls} steps (first: step "
            f"{self._first_failure}); those steps kept the previous weights"
        ]

    def weights_from_gramian(
        self, gramian: torch.Tensor, losses: torch.Tensor | None = None
    ) -> torch.Tensor:
        g = to_numpy(gramian, self.precision(gramian))
        n = len(g)
        call = self._calls
        self._calls += 1
        if self._alpha is None or len(self._alpha) != n or call % self.update_weights_every == 0:
            alpha, ok = nash_weights(g, self._alpha, max_iter=self.max_iter)
            if not ok and self._alpha is not None:
                # A warm start far from this step's solution can stall the line search (e.g.
                # after reaching the front, where weights change by orders of magnitude):
                # retry from the cold start before giving up.
                alpha, ok = nash_weights(g, None, max_iter=self.max_iter)
            self.last_converged = ok
            if ok:
                self._alpha = alpha
            else:
                self.failed_steps += 1
                if self.failed_steps == 1:
                    self._first_failure = call
                if self._alpha is None or len(self._alpha) != n:
                    self._alpha = np.ones(n)  # the authors' initial weights
        w = self._alpha.copy()
        if self.max_norm > 0:
            norm = float(np.sqrt(max(w @ g @ w, 0.0)))
            if norm > self.max_norm:
                w = w * (self.max_norm / norm)
        return to_torch(w, gramian)
