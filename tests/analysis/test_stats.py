"""The statistics against values worked by hand (and SciPy's, where it has the same quantity)."""

import math

import pytest
import scipy.stats

from mtldiag.analysis.stats import (
    excludes,
    mean_ci95,
    seeds_needed,
    straddles,
    t_quantile,
    wilson_ci95,
)


def test_t_quantile_closed_forms():
    # df = 1 is the Cauchy distribution: P(|T| <= t) = 2/π atan t, so t = tan(0.95 π/2).
    assert t_quantile(1) == pytest.approx(math.tan(0.95 * math.pi / 2), rel=1e-10)
    # df = 2: P(|T| <= t) = t / sqrt(2 + t²) = 0.95  =>  t² = 2 · 0.9025 / 0.0975.
    assert t_quantile(2) == pytest.approx(math.sqrt(2 * 0.9025 / 0.0975), rel=1e-10)


@pytest.mark.parametrize("df", [3, 4, 5, 7, 10, 29, 100])
def test_t_quantile_matches_scipy(df):
    assert t_quantile(df) == pytest.approx(scipy.stats.t.ppf(0.975, df), rel=1e-9)


def test_t_quantile_rejects_zero_degrees_of_freedom():
    with pytest.raises(ValueError, match="df = 0"):
        t_quantile(0)


def test_mean_ci95_two_seeds_of_the_issue():
    # mean -5.41, s = 9.54/√2, standard error s/√2 = 4.77, half width 12.7062 · 4.77 = 60.609.
    lo, hi = mean_ci95([-10.18, -0.64])
    assert lo == pytest.approx(-5.41 - 12.706204736 * 4.77, rel=1e-9)
    assert hi == pytest.approx(-5.41 + 12.706204736 * 4.77, rel=1e-9)


def test_mean_ci95_three_values():
    # mean 2, s = 1, standard error 1/√3, t(2) = 4.302653: 2 ± 2.484138.
    lo, hi = mean_ci95([1.0, 2.0, 3.0])
    assert (lo, hi) == (pytest.approx(-0.484138, abs=1e-6), pytest.approx(4.484138, abs=1e-6))


def test_mean_ci95_needs_two_values():
    assert mean_ci95([3.0]) is None
    assert mean_ci95([]) is None


def test_wilson_by_hand():
    # n = 4, z² = 3.8415: centre (k/4 + 0.4802) / 1.9604, half 0.9998 · sqrt(p(1-p)/4 + 0.0600).
    assert wilson_ci95(0, 4) == (0.0, pytest.approx(0.489891, abs=1e-6))
    lo, hi = wilson_ci95(2, 4)
    assert (lo, hi) == (pytest.approx(0.150039, abs=1e-6), pytest.approx(0.849961, abs=1e-6))
    assert wilson_ci95(4, 4) == (pytest.approx(0.510109, abs=1e-6), 1.0)
    assert wilson_ci95(0, 0) is None


def test_wilson_narrows_with_n():
    lo4, hi4 = wilson_ci95(2, 4)
    lo400, hi400 = wilson_ci95(200, 400)
    assert hi400 - lo400 < (hi4 - lo4) / 5
    # 200/400: centre 0.5, half ≈ 1.96 · sqrt(0.25/400) shrunk by 1/(1 + z²/n): ±0.0488.
    assert (lo400, hi400) == (pytest.approx(0.45125, abs=1e-4), pytest.approx(0.54875, abs=1e-4))


def test_wilson_rejects_more_events_than_trials():
    with pytest.raises(ValueError, match="k = 5"):
        wilson_ci95(5, 4)


def test_straddles_and_excludes():
    assert straddles((0.15, 0.85), 0.3)
    assert not straddles((0.35, 0.9), 0.3)
    assert not straddles((0.0, 0.29), 0.3)
    assert excludes((0.1, 2.0)) and excludes((-2.0, -0.1))
    assert not excludes((-0.1, 2.0)) and not excludes(None)


def test_seeds_needed_at_its_boundary():
    # s = 6.7458: n = 8 gives t(7)/√8 · s = 2.3646/2.8284 · s = 5.640 > 5.41 (not enough);
    # n = 9 gives t(8)/3 · s = 2.3060/3 · s = 5.185 < 5.41 (enough).
    assert seeds_needed(-5.41, 6.7458) == 9
    assert seeds_needed(5.41, 6.7458) == 9
    assert seeds_needed(1.0, 0.0) == 2  # no spread: any two seeds exclude 0
    assert seeds_needed(0.0, 1.0) is None  # no difference: no number of seeds
    assert seeds_needed(1.0, None) is None  # one seed: no spread to plan with
    assert seeds_needed(0.001, 1.0) is None  # more than MAX_SEEDS
