"""Paired per-seed differences on hand-made metrics (percent, positive is worse)."""

import pytest

from mtldiag.analysis.paired import paired_difference, paired_row, relative_change, seeds_of

LOWER = {"a": False, "b": False}


def test_relative_change_sign():
    # Accuracy 0.904 against 0.942 (higher is better): 0.038 / 0.942 = 4.034% worse.
    assert relative_change(0.904, 0.942, True) == pytest.approx(4.0339703, rel=1e-6)
    assert relative_change(0.9, 1.0, False) == pytest.approx(-10.0)
    assert relative_change(1.1, -1.0, True) is not None  # |reference| keeps the sign meaning
    assert relative_change(1.0, 0.0, False) is None
    assert relative_change(None, 1.0, False) is None


def test_each_seed_against_the_same_seed():
    refs = {0: {"a": 1.0, "b": 2.0}, 1: {"a": 2.0, "b": 1.0}}
    runs = {0: {"a": 0.9, "b": 1.9}, 1: {"a": 2.2, "b": 1.0}}
    row = paired_row(runs, refs, LOWER)
    # seed 0: a -10%, b -5% -> Δm -7.5; seed 1: a +10%, b 0% -> Δm +5.
    assert row["delta_m_per_seed"] == {"0": pytest.approx(-7.5), "1": pytest.approx(5.0)}
    assert row["delta_m"] == pytest.approx(-1.25)
    assert row["delta_m_std"] == pytest.approx(12.5 / 2**0.5)
    half = 12.706204736 * 12.5 / 2  # t(1) · s/√2, s = 12.5/√2
    assert row["delta_m_ci95"] == [pytest.approx(-1.25 - half), pytest.approx(-1.25 + half)]
    assert row["per_task"]["a"]["diff_mean"] == pytest.approx(0.0)
    assert row["per_task"]["b"]["diff_mean"] == pytest.approx(-2.5)
    assert row["worse_on"] == []


def test_against_the_mean_reference_the_spread_would_differ():
    # The same runs against the reference's mean over seeds (a 1.5, b 1.5) would read
    # seed 0: (-40 + 26.7)/2, seed 1: (46.7 - 33.3)/2 -- a spread of seed noise, not of method.
    refs = {0: {"a": 1.0, "b": 2.0}, 1: {"a": 2.0, "b": 1.0}}
    row = paired_row(refs, refs, LOWER)  # the reference against itself
    assert row["delta_m_per_seed"] == {"0": 0.0, "1": 0.0}
    assert row["delta_m_std"] == 0.0
    assert row["delta_m_ci95"] == [0.0, 0.0]


def test_worse_on_needs_the_whole_interval_above_zero():
    refs = {s: {"a": 1.0, "b": 1.0} for s in range(3)}
    runs = {0: {"a": 1.04, "b": 0.99}, 1: {"a": 1.05, "b": 1.0}, 2: {"a": 1.06, "b": 1.01}}
    row = paired_row(runs, refs, LOWER)
    # a: 4, 5, 6 -> 5 ± t(2)/√3 = 5 ± 2.484138; b: -1, 0, 1 -> 0 ± 2.484138.
    assert row["per_task"]["a"]["diff_ci95"] == [
        pytest.approx(2.515862, abs=1e-5),
        pytest.approx(7.484138, abs=1e-5),
    ]
    assert row["worse_on"] == ["a"]
    # Δm per seed: 1.5, 2.5, 3.5 -> 2.5 ± 2.484138: [0.0159, 4.984].
    assert row["delta_m_ci95"][0] == pytest.approx(0.015862, abs=1e-5)


def test_a_seed_without_reference_is_not_paired():
    refs = {0: {"a": 1.0, "b": 1.0}, 1: {"a": 1.0}}  # seed 1 lacks b; seed 2 has none
    runs = {0: {"a": 1.1, "b": 1.0}, 1: {"a": 1.2, "b": 1.0}, 2: {"a": 1.3, "b": 1.0}}
    row = paired_row(runs, refs, LOWER)
    assert row["delta_m_per_seed"] == {"0": pytest.approx(5.0)}
    assert row["delta_m_std"] is None and row["delta_m_ci95"] is None
    assert row["per_task"]["a"] == {"diff_mean": pytest.approx(10.0), "diff_ci95": None}


def test_no_paired_seed():
    row = paired_row({0: {"a": 1.0, "b": 1.0}}, {}, LOWER)
    assert row["delta_m"] is None and row["delta_m_per_seed"] == {}
    assert row["per_task"]["a"] == {"diff_mean": None, "diff_ci95": None}


def test_paired_difference_over_common_seeds():
    d = paired_difference({0: -10.18, 1: -0.64}, {"0": 0.0, "1": 1.0, "2": 5.0})
    # -10.18 - 0 and -0.64 - 1 = -1.64: mean -5.91, s = 8.54/√2, half t(1) · 8.54/2.
    assert d["seeds"] == 2
    assert d["diff_mean"] == pytest.approx(-5.91)
    assert d["diff_std"] == pytest.approx(8.54 / 2**0.5)
    assert d["diff_ci95"][1] == pytest.approx(-5.91 + 12.706204736 * 4.27)
    assert paired_difference({0: 1.0}, {1: 1.0}) == {
        "diff_mean": None,
        "diff_std": None,
        "diff_ci95": None,
        "seeds": 0,
    }


def test_seeds_of_keeps_ok_runs_with_metrics():
    runs = [
        {"method": "ew", "seed": 0, "status": "ok", "metrics": {"a": 1.0}},
        {"method": "ew", "seed": 1, "status": "failed", "metrics": {"a": 9.0}},
        {"method": "pcgrad", "seed": 0, "status": "ok", "metrics": {"a": 2.0}},
    ]
    assert seeds_of(runs, "ew") == {"0": {"a": 1.0}}
