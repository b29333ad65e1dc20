"""Online aggregation of one (method, seed) run into its ``summary.json`` entry."""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Sequence
from typing import Any

from mtldiag.analysis.stats import wilson_ci95
from mtldiag.engine.gramian import StepMetrics
from mtldiag.rundir.schema import PairEntry, PairStats, RunEntry

FINAL_FRACTION = 0.1  # final_loss is the mean of the last 10% of steps (at least one)
INITIAL_STEPS = 5  # initial_loss is the mean of the first 5 steps (one batch is noisy)


def finite(x: float | None) -> float | None:
    """JSON-safe number: NaN/Inf become ``None``."""
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


class RunAccumulator:
    """Adds up one run's steps; :meth:`result` is its entry in ``summary.json["runs"]``."""

    def __init__(self, method: str, seed: int, tasks: Sequence[str], layers: Sequence[str]) -> None:
        self.method = method
        self.seed = seed
        self.tasks = list(tasks)
        self.layers = list(layers)  # starting with "*"
        t = len(self.tasks)
        self.losses: list[list[float]] = []
        self.times: list[float] = []
        self.peak_mb = 0.0
        self.weight_sum = [0.0] * t
        self.weight_n = [0] * t
        self.norm_sum = [0.0] * t
        self.n_inst = 0
        # Steps where a task had labels (a loss), and instrumented steps where it (or both
        # tasks of a pair) did: a task's or pair's means rest on those steps only.
        self.present = [0] * t
        self.norm_n = [0] * t
        self.pairs: list[tuple[int, int]] = [(i, j) for i in range(t) for j in range(i + 1, t)]
        n_l, n_p = len(self.layers), len(self.pairs)
        self.cos_sum = [[0.0] * n_p for _ in range(n_l)]
        self.neg = [[0] * n_p for _ in range(n_l)]
        self.gms_sum = [[0.0] * n_p for _ in range(n_l)]
        self.neg_cos_sum = [[0.0] * n_p for _ in range(n_l)]
        self.pair_n = [[0] * n_p for _ in range(n_l)]
        self.status = "ok"
        self.error: str | None = None
        self.extra: dict[str, Any] = {}

    def add(
        self,
        losses: Sequence[float | None],
        time_ms: float,
        memory_mb: float,
        weights: Sequence[float | None] | None,
        metrics: StepMetrics | None,
    ) -> None:
        """One step; ``None`` entries: a task without labels that step (left out)."""
        self.losses.append(list(losses))
        self.times.append(time_ms)
        self.peak_mb = max(self.peak_mb, memory_mb)
        for i, v in enumerate(losses):
            self.present[i] += v is not None
        if weights is not None:
            for i, w in enumerate(weights):
                if w is not None:
                    self.weight_sum[i] += w
                    self.weight_n[i] += 1
        if metrics is None:
            return
        self.n_inst += 1
        for i, n in enumerate(metrics.grad_norm):
            if n is not None:
                self.norm_sum[i] += n
                self.norm_n[i] += 1
        for li in range(len(self.layers)):
            cos, g = metrics.cosine[li], metrics.gms[li]
            for pi in range(len(self.pairs)):
                if cos[pi] is None:
                    continue
                self.pair_n[li][pi] += 1
                self.cos_sum[li][pi] += cos[pi]
                if cos[pi] < 0:
                    self.neg[li][pi] += 1
                    self.neg_cos_sum[li][pi] += cos[pi]
                self.gms_sum[li][pi] += g[pi]

    def fail(self, status: str, error: str) -> None:
        self.status = status
        self.error = error

    def _pair_stats(self, li: int, pi: int) -> PairStats:
        """Pair ``pi``'s statistics over layer ``li`` (0: all shared parameters)."""
        k, n = self.pair_n[li][pi], self.neg[li][pi]
        ci = wilson_ci95(n, k)
        return PairStats(
            cosine_mean=finite(self.cos_sum[li][pi] / k) if k else None,
            conflict_rate=n / k if k else None,
            # The rate is a count over k steps: with 4 steps it can only be 0, 25, ..., 100 %.
            conflict_rate_n=k,
            conflict_rate_ci95=[ci[0], ci[1]] if ci is not None else None,
            gms_mean=finite(self.gms_sum[li][pi] / k) if k else None,
            # Mean cosine over the conflicting steps only: how hard they conflict.
            conflict_cosine_mean=finite(self.neg_cos_sum[li][pi] / n) if n else None,
        )

    def result(self) -> RunEntry:
        t, steps = self.tasks, len(self.losses)
        tail = max(1, math.ceil(steps * FINAL_FRACTION))
        final = {x: None for x in t}
        mean = {x: None for x in t}
        initial = {x: None for x in t}
        if steps:
            head = self.losses[:INITIAL_STEPS]
            rows = self.losses[-tail:]
            finite_rows = [r for r in rows if all(v is None or math.isfinite(v) for v in r)] or rows
            for i, x in enumerate(t):
                initial[x] = _mean(r[i] for r in head)
                final[x] = _mean(r[i] for r in finite_rows)
                mean[x] = _mean(r[i] for r in self.losses)
        k = self.n_inst
        norm_mean = {
            x: (finite(self.norm_sum[i] / self.norm_n[i]) if self.norm_n[i] else None)
            for i, x in enumerate(t)
        }
        vals = [v for v in norm_mean.values() if v is not None]
        # A task with a zero gradient makes the ratio unbounded: None, like no gradient at all.
        ratio = max(vals) / min(vals) if vals and min(vals) > 0 else None

        pairs = []
        for pi, (i, j) in enumerate(self.pairs):
            layers = {layer: self._pair_stats(li, pi) for li, layer in enumerate(self.layers)}
            whole = layers.pop(self.layers[0])  # the first "layer" is all shared parameters
            pairs.append(PairEntry(a=t[i], b=t[j], **whole, layers=layers))
        out = RunEntry(
            method=self.method,
            seed=self.seed,
            status=self.status,
            error=self.error,
            steps=steps,
            instrumented_steps=k,
            final_loss=final,
            loss_mean=mean,
            initial_loss=initial,
            grad_norm_mean=norm_mean,
            grad_norm_ratio=finite(ratio),
            weight_mean={
                x: finite(self.weight_sum[i] / self.weight_n[i]) if self.weight_n[i] else None
                for i, x in enumerate(t)
            },
            pairs=pairs,
            # The first steps pay for allocation and warm-up: the median ignores them.
            step_time_ms_median=finite(statistics.median(self.times)) if self.times else None,
            peak_memory_mb=finite(self.peak_mb),
        )
        if any(n < steps for n in self.present):  # some task lacked labels on some steps
            out["present_steps"] = dict(zip(t, self.present, strict=True))
        out.update(self.extra)
        return out


def _mean(values: Iterable[float | None]) -> float | None:
    """Mean of the values that are there (a task's steps with labels); None if none is."""
    there = [v for v in values if v is not None]
    return finite(statistics.fmean(there)) if there else None
