"""Verdict kinds at their boundaries, the seeds hint, the caution's cause."""

import pytest

from mtldiag.analysis.evidence import (
    Caution,
    caution,
    caution_sentence,
    noise_sentence,
    seeds_hint,
    verdict_kind,
    worse_sentence,
)


def fvs(mean, ci, seeds, std=1.0):
    return {"diff_mean": mean, "diff_std": std, "diff_ci95": ci, "seeds": seeds}


def test_verdict_kinds_at_their_boundaries():
    assert verdict_kind(1, None) == "single_method"
    assert verdict_kind(2, None) == "too_few_seeds"
    assert verdict_kind(2, fvs(-5.0, [-60.0, 50.0], 2)) == "too_few_seeds"
    assert verdict_kind(2, fvs(-5.0, [-9.0, -1.0], 2)) == "too_few_seeds"  # 2 seeds: still few
    assert verdict_kind(5, fvs(-1.0, [-2.0, -0.001], 3)) == "significant"
    assert verdict_kind(5, fvs(1.0, [0.001, 2.0], 3)) == "significant"
    assert verdict_kind(5, fvs(-1.0, [-2.0, 0.0], 3)) == "within_noise"  # touching 0
    assert verdict_kind(5, fvs(-1.0, [-2.0, 0.5], 10)) == "within_noise"


def test_seeds_hint():
    # The two seeds: mean -5.41, s 6.7458 -> 9 seeds (see test_stats).
    assert "about 9 seeds (--seeds 0,1,...,8)" in seeds_hint(fvs(-5.41, None, 2, std=6.7458))
    assert seeds_hint(fvs(-5.0, None, 1, std=None)) == "run at least 3 seeds (--seeds 0,1,2)"
    assert seeds_hint(None) == "run at least 3 seeds (--seeds 0,1,2)"
    # A clear difference still asks for the minimum, not fewer.
    assert "about 3 seeds" in seeds_hint(fvs(-10.0, None, 2, std=0.1))
    assert "no practical number" in seeds_hint(fvs(0.0, None, 2, std=1.0))


def test_noise_sentences():
    s = noise_sentence("significant", "pcgrad", "ew", fvs(-1.234, [-2.0, -0.5], 4))
    assert s.startswith("pcgrad beats ew beyond seed noise") and "1.23 points" in s
    assert "-2.00 to -0.500" in s and "4 seeds" in s
    s = noise_sentence("within_noise", "pcgrad", "ew", fvs(-1.0, [-2.5, 0.5], 3))
    assert "within seed noise" in s and "includes 0" in s
    s = noise_sentence("too_few_seeds", "mgda", "ew", fvs(-5.41, [-66.0, 55.2], 2, std=6.7458))
    assert "cannot be judged from 2 paired seeds" in s and "about 9 seeds" in s
    assert noise_sentence("single_method", "ew", "", None) == ""


def test_worse_sentence_names_tasks_and_intervals():
    per_task = {
        "cls": {"diff_mean": 4.034, "diff_ci95": [1.2, 6.9]},
        "depth": {"diff_mean": -8.0, "diff_ci95": [-9.0, -7.0]},
    }
    s = worse_sentence("mgda", ["cls"], per_task)
    assert s == (
        "But mgda is worse than the reference beyond noise on "
        "'cls' (+4.03%, 95% interval 1.20 to 6.90)."
    )
    assert worse_sentence("mgda", [], per_task) == ""


HIB = {"cls": True, "depth": False}


def rows(**diffs):
    return [{t: {"diff_mean": d, "diff_ci95": None} for t, d in diffs.items()}]


def test_caution_saturated_task():
    # cls at 0.999 can change by 0.1% at most; depth's 3% is 98% of all the changes.
    c = caution(rows(cls=0.05, depth=3.0), {"cls": 0.999, "depth": 2.0}, HIB)
    assert c is not None and (c.task, c.cause, c.saturated) == ("depth", "saturated", ("cls",))
    assert c.share == pytest.approx(3.0 / 3.05)
    assert "'cls' is saturated" in caution_sentence(c)
    assert "small" not in caution_sentence(c)


def test_caution_large_changes():
    hib = {"a": False, "b": False}
    c = caution(rows(a=300.0, b=2.0), {"a": 0.001, "b": 1.0}, hib)
    assert c == Caution("a", pytest.approx(300 / 302), "large_changes", (), 0.001, 300.0)
    assert "(mean 300% of its reference value 0.00100;" in caution_sentence(c)


def test_caution_others_flat_and_none():
    hib = {"a": False, "b": False}
    c = caution(rows(a=20.0, b=1.0), {"a": 1.0, "b": 1.0}, hib)
    assert c is not None and c.cause == "others_flat"
    assert caution(rows(a=8.0, b=2.0), {"a": 1.0, "b": 1.0}, hib) is None  # 80% < 90%
    assert caution(rows(a=8.0), {"a": 1.0}, {"a": False}) is None  # one task
