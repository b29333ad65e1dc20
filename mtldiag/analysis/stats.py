"""The few statistics the verdicts rest on, as pure functions of plain numbers.

- The Student-t 95 % interval of a mean over seeds (``mean_ci95``), with the t quantile
  computed exactly for integer degrees of freedom (Abramowitz & Stegun 26.7.3–4), so the
  package needs no SciPy at run time.
- The Wilson score interval of a rate (Wilson 1927; Brown, Cai & DasGupta 2001 recommend it
  over the normal one for small n and rates near 0 or 1): a conflict rate on 4 instrumented
  steps is one of 0, 25, 50, 75 or 100 % and its interval is wide.
- ``seeds_needed``: how many seeds the observed spread would need for a t interval to
  exclude 0, if mean and spread stayed as observed (a rough planning number, not a power
  analysis).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence

LEVEL = 0.95
Z95 = 1.959963984540054  # the standard normal's 0.975 quantile (two-sided 95 %)
MAX_SEEDS = 1000  # seeds_needed gives up beyond this: the difference is noise for any budget

Interval = tuple[float, float]


def t_two_sided_prob(t: float, df: int) -> float:
    """P(|T| ≤ t) for Student's t with ``df`` ≥ 1 degrees of freedom (A&S 26.7.3–4)."""
    if df < 1:
        raise ValueError(f"Parameter `df` should be a positive integer. Found `df = {df}`.")
    theta = math.atan(abs(t) / math.sqrt(df))
    c2 = math.cos(theta) ** 2
    if df % 2:  # odd: 2/π (θ + sin θ (cos θ + 2/3 cos³θ + … + (2·4…(ν−3))/(1·3…(ν−2)) cos^(ν−2) θ))
        if df == 1:
            return 2.0 * theta / math.pi
        term = total = math.cos(theta)
        for k in range(3, df - 1, 2):
            term *= c2 * (k - 1) / k
            total += term
        return 2.0 / math.pi * (theta + math.sin(theta) * total)
    # even: sin θ (1 + 1/2 cos²θ + (1·3)/(2·4) cos⁴θ + … + (1·3…(ν−3))/(2·4…(ν−2)) cos^(ν−2) θ)
    term = total = 1.0
    for k in range(2, df - 1, 2):
        term *= c2 * (k - 1) / k
        total += term
    return math.sin(theta) * total


def t_quantile(df: int, level: float = LEVEL) -> float:
    """The t with P(|T| ≤ t) = ``level`` (the two-sided critical value; 12.706 for df = 1)."""
    lo, hi = 0.0, 1.0
    while t_two_sided_prob(hi, df) < level:
        hi *= 2.0
    for _ in range(200):  # bisection: the CDF is increasing; 200 halvings reach float precision
        mid = 0.5 * (lo + hi)
        if t_two_sided_prob(mid, df) < level:
            lo = mid
        else:
            hi = mid
        if hi - lo <= 1e-12 * hi:
            break
    return 0.5 * (lo + hi)


def mean_std(values: Sequence[float]) -> tuple[float, float | None]:
    """Mean and sample standard deviation (n − 1; ``None`` for one value)."""
    if not values:
        raise ValueError("mean_std needs at least one value")
    mean = statistics.fmean(values)
    return mean, (statistics.stdev(values) if len(values) > 1 else None)


def mean_ci95(values: Sequence[float]) -> Interval | None:
    """The Student-t 95 % interval of the mean of ``values``; ``None`` for fewer than two."""
    if len(values) < 2:
        return None
    mean, std = mean_std(values)
    half = t_quantile(len(values) - 1) * (std or 0.0) / math.sqrt(len(values))
    return (mean - half, mean + half)


def wilson_ci95(k: int, n: int) -> Interval | None:
    """The Wilson score 95 % interval of ``k`` events in ``n`` trials (``None`` when n = 0)."""
    if n <= 0:
        return None
    if not 0 <= k <= n:
        raise ValueError(f"Parameter `k` should be in [0, n = {n}]. Found `k = {k}`.")
    p, z2 = k / n, Z95 * Z95
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = Z95 / (1 + z2 / n) * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    # The exact ends are 0 and 1 at k = 0 and k = n; rounding must not leave them a hair off.
    lo = 0.0 if k == 0 else max(0.0, centre - half)
    hi = 1.0 if k == n else min(1.0, centre + half)
    return (lo, hi)


def excludes(interval: Interval | None, value: float = 0.0) -> bool:
    """Whether ``interval`` lies wholly on one side of ``value`` (``False`` without one)."""
    return interval is not None and (interval[0] > value or interval[1] < value)


def straddles(interval: Interval | None, threshold: float) -> bool:
    """Whether a rate's interval has ``threshold`` inside it: the data cannot tell its side."""
    return interval is not None and interval[0] < threshold <= interval[1]


def seeds_needed(mean: float, std: float | None) -> int | None:
    """Seeds for a t interval of the mean to exclude 0 if ``mean`` and ``std`` stayed as seen.

    The smallest n ≥ 2 with t(n − 1) · std / √n < |mean|; ``None`` when the mean is 0, the
    spread is unknown, or more than ``MAX_SEEDS`` would be needed.
    """
    if std is None or not math.isfinite(mean) or not math.isfinite(std) or mean == 0:
        return None

    def enough(n: int) -> bool:
        return t_quantile(n - 1) * std / math.sqrt(n) < abs(mean)

    if not enough(MAX_SEEDS):
        return None
    # t(n − 1) / √n falls as n grows, so the smallest n that is enough is found by bisection.
    lo, hi = 1, MAX_SEEDS  # enough(hi) holds; lo is below any n that is enough
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if enough(mid):
            hi = mid
        else:
            lo = mid
    return hi
