"""Static and loss-ratio weightings: ``ew``, ``fixed``, ``init_loss``, ``prior_loss``,
``realtime`` and ``anneal``.

All return weights on the *sum* scale (EW is ``w_i = 1``) and need a single backward pass of
``sum_i w_i L_i``.
"""

from __future__ import annotations

from typing import Any

import torch

from mtldiag.methods._utils import checks
from mtldiag.methods.base import HyperParam, MethodError, RunContext, WeightingMethod

_EPS = 1e-12  # floor on a loss used as a divisor (a loss of exactly 0 would give inf)


class EqualWeights(WeightingMethod):
    """Equal weighting: ``L = sum_i L_i`` (``w_i = 1``), the baseline every paper compares to."""

    name = "ew"
    aliases = ("equal", "sum", "linear")
    paper = "baseline (unweighted sum of the task losses)"

    def weights(self, losses: torch.Tensor, step: int) -> torch.Tensor:
        return torch.ones_like(losses)


class FixedWeights(WeightingMethod):
    """Manual weights from the spec: ``L = sum_i w_i L_i``.

    :param weights: ``{task: weight}`` with one non-negative weight per task of the run
        (checked against the run's tasks in :meth:`reset`).
    """

    name = "fixed"
    aliases = ("manual", "static")
    paper = "baseline (hand-tuned weights; the seeds' 'manual loss weighting')"
    params = (HyperParam("weights", None, "{task: weight}, one non-negative float per task", True),)

    def __init__(self, weights: Any = None) -> None:
        if weights is None:
            raise MethodError(
                "Parameter `weights` of fixed is required: a mapping {task: weight}. "
                "Found `weights = None`.",
                hint="in the spec: `method: {fixed: {weights: {seg: 1.0, depth: 0.5}}}`",
            )
        w = checks.task_mapping("weights", weights)
        self.weights_by_task = {t: checks.real(f"weights.{t}", v, low=0.0) for t, v in w.items()}

    def hyperparams(self) -> dict[str, Any]:
        return {"weights": dict(self.weights_by_task)}

    def reset(self, ctx: RunContext) -> None:
        super().reset(ctx)
        checks.check_tasks(
            "fixed", "weights", list(self.weights_by_task), list(ctx.tasks), require_all=True
        )
        self._w = torch.tensor([self.weights_by_task[t] for t in ctx.tasks])

    def weights(self, losses: torch.Tensor, step: int) -> torch.Tensor:
        return self._w.to(losses)


class InitialLoss(WeightingMethod):
    """Reciprocal of each task's initial loss: ``w_i = 1 / L_i(0)``.

    From the seed document (Su, "Balancing multiple losses", 1.1): dividing each loss by its
    initial value puts every task on a comparable scale.

    :param source: ``"batch"`` — ``L_i(0)`` is the mean of the first ``batches`` training
        losses (until then, the mean so far); ``"theory"`` — the value an untrained model
        should give (``log K`` for K-class cross-entropy, ``E[y²]`` for MSE), from the run's
        task statistics.
    :param batches: how many first steps to average for ``source="batch"`` (default 1).
    :param normalize: rescale the weights to sum to T (keeps EW's step size). Default
        ``False``, as in the seed: ``w_i = 1 / L_i(0)`` exactly.
    """

    name = "init_loss"
    aliases = ("initial_loss", "init")
    paper = "Su 2022, seed 'Balancing multiple losses' §1.1 (initial loss)"
    stateful = True
    params = (
        HyperParam("source", "batch", "batch | theory"),
        HyperParam("batches", 1, "first steps averaged when source=batch"),
        HyperParam("normalize", False, "rescale weights to sum to T"),
    )

    def __init__(self, source: str = "batch", batches: int = 1, normalize: bool = False) -> None:
        self.source = checks.choice("source", source, ("batch", "theory"))
        self.batches = checks.integer("batches", batches, low=1)
        self.normalize = checks.boolean("normalize", normalize)

    def reset(self, ctx: RunContext) -> None:
        super().reset(ctx)
        self._sum: torch.Tensor | None = None
        self._count = 0
        self._ref: torch.Tensor | None = None
        if self.source == "theory":
            values = []
            for t in ctx.tasks:
                st = ctx.task_stats.get(t)
                v = None if st is None else st.theory_initial_loss
                if v is None:
                    raise MethodError(
                        f"init_loss (source=theory) needs each task's theoretical initial "
                        f"loss; task '{t}' has none.",
                        hint="use the spec's tasks: form with a built-in loss, or "
                        "init_loss:source=batch",
                    )
                values.append(float(v))
            self._ref = torch.tensor(values)

    def _finish(self, ref: torch.Tensor) -> torch.Tensor:
        w = 1.0 / ref.clamp_min(_EPS)
        if self.normalize:
            w = w * (len(w) / w.sum())
        return w

    def weights(self, losses: torch.Tensor, step: int) -> torch.Tensor:
        if self._ref is not None:
            return self._finish(self._ref.to(losses))
        # Running mean of the first `batches` losses (this step's included).
        s = losses.detach().clone() if self._sum is None else self._sum + losses
        n = self._count + 1
        ref = s / n
        if n >= self.batches:
            self._ref = ref.clone()
        else:
            self._sum, self._count = s, n
        return self._finish(ref)


class PriorLoss(WeightingMethod):
    """Reciprocal of the loss of the prior predictor: ``w_i = 1 / L_i(prior)``.

    From the seed document (Su, §1.2): the best constant predictor (class frequencies for
    cross-entropy — their entropy; the label mean for MSE — the label variance) measures how
    hard a task is better than an untrained model does. The trainer computes it in one pass
    over the training labels (``RunContext.task_stats[task].prior_loss``).

    :param normalize: rescale the weights to sum to T (default ``False``, as the seed).
    """

    name = "prior_loss"
    aliases = ("prior",)
    paper = "Su 2022, seed 'Balancing multiple losses' §1.2 (prior loss)"
    params = (HyperParam("normalize", False, "rescale weights to sum to T"),)

    def __init__(self, normalize: bool = False) -> None:
        self.normalize = checks.boolean("normalize", normalize)

    def reset(self, ctx: RunContext) -> None:
        super().reset(ctx)
        values = []
        for t in ctx.tasks:
            st = ctx.task_stats.get(t)
            v = None if st is None else st.prior_loss
            if v is None:
                raise MethodError(
                    f"prior_loss needs each task's prior loss; task '{t}' has none.",
                    hint="use the spec's tasks: form with a built-in loss (cross_entropy, mse, "
                    "...) so mtldiag can compute it from the labels, or use init_loss",
                )
            values.append(float(v))
        w = 1.0 / torch.tensor(values).clamp_min(_EPS)
        self._w = w * (len(w) / w.sum()) if self.normalize else w

    def weights(self, losses: torch.Tensor, step: int) -> torch.Tensor:
        return self._w.to(losses)


class RealTimeLoss(WeightingMethod):
    """Real-time loss normalisation: ``L = sum_i L_i / L_i.detach()`` (``w_i = 1 / L_i``).

    From the seed document (Su, §1.3): every normalised loss equals 1, and its gradient is
    ``grad L_i / L_i`` — the gradient of ``log L_i``.
    """

    name = "realtime"
    aliases = ("real_time", "log_loss", "loss_normalize")
    paper = "Su 2022, seed 'Balancing multiple losses' §1.3 (real-time loss)"

    def weights(self, losses: torch.Tensor, step: int) -> torch.Tensor:
        return 1.0 / losses.clamp_min(_EPS)


class Anneal(WeightingMethod):
    """Task-level annealing: per-task weight schedules (the seeds' curriculum).

    :param schedules: ``{task: {from: 0, to: 1, start: 100, end: 500}}`` — the weight is
        ``from`` before step ``start``, ``to`` after step ``end``, linear in between. Tasks not
        listed keep weight 1. Every listed task must be one of the run's tasks.
    """

    name = "anneal"
    aliases = ("annealing", "curriculum", "schedule")
    paper = "seed 'Why might combining multiple cost components…' (task-level annealing)"
    params = (HyperParam("schedules", None, "{task: {from, to, start, end}} linear ramps", True),)

    def __init__(self, schedules: Any = None) -> None:
        if schedules is None:
            raise MethodError(
                "Parameter `schedules` of anneal is required. Found `schedules = None`.",
                hint="e.g. `anneal: {schedules: {depth: {from: 0, to: 1, start: 100, end: 500}}}`",
            )
        sched = checks.task_mapping("schedules", schedules)
        self.schedules: dict[str, dict[str, float]] = {}
        for task, spec in sched.items():
            if not isinstance(spec, dict):
                raise MethodError(
                    f"Parameter `schedules.{task}` should be a mapping with from, to, start, "
                    f"end. Found `schedules.{task} = {spec!r}`."
                )
            extra = set(spec) - {"from", "to", "start", "end"}
            if extra:
                raise MethodError(
                    f"Parameter `schedules.{task}` should only have the keys from, to, start, "
                    f"end. Found `{sorted(extra)[0]}`."
                )
            lo = checks.real(f"schedules.{task}.from", spec.get("from", 0.0), low=0.0)
            hi = checks.real(f"schedules.{task}.to", spec.get("to", 1.0), low=0.0)
            start = checks.integer(f"schedules.{task}.start", spec.get("start", 0), low=0)
            end = checks.integer(f"schedules.{task}.end", spec.get("end", start), low=start)
            self.schedules[task] = {"from": lo, "to": hi, "start": start, "end": end}

    def hyperparams(self) -> dict[str, Any]:
        return {"schedules": {t: dict(s) for t, s in self.schedules.items()}}

    def reset(self, ctx: RunContext) -> None:
        super().reset(ctx)
        checks.check_tasks(
            "anneal", "schedules", list(self.schedules), list(ctx.tasks), require_all=False
        )
        self._tasks = list(ctx.tasks)

    def weight_at(self, task: str, step: int) -> float:
        s = self.schedules.get(task)
        if s is None:
            return 1.0
        if step <= s["start"]:
            return s["from"]
        if step >= s["end"]:
            return s["to"]
        frac = (step - s["start"]) / (s["end"] - s["start"])
        return s["from"] + frac * (s["to"] - s["from"])

    def weights(self, losses: torch.Tensor, step: int) -> torch.Tensor:
        return torch.tensor([self.weight_at(t, step) for t in self._tasks]).to(losses)


ALL = (EqualWeights, FixedWeights, InitialLoss, PriorLoss, RealTimeLoss, Anneal)
