"""The pair rules: severity as the mean cosine's effect size, and no rule on a rate whose
Wilson interval straddles its threshold."""

from mtldiag.analysis.conflicts import effect, is_conflict, pair_findings
from mtldiag.analysis.stats import wilson_ci95


def pair(cos, rate, neg, n=None):
    p = {"a": "a", "b": "b", "cosine_mean": cos, "conflict_rate": rate, "gms_mean": 0.9}
    p["conflict_cosine_mean"] = neg
    if n is not None:
        k = round(rate * n)
        p["conflict_rate_n"], p["conflict_rate_ci95"] = n, list(wilson_ci95(k, n))
    return p


def test_effect_size_bands_at_their_boundaries():
    assert effect(-0.05) == "minor" and effect(-0.0999) == "minor"
    assert effect(-0.1) == "moderate" and effect(-0.2999) == "moderate"
    assert effect(-0.3) == "strong" and effect(-0.9) == "strong"


def test_a_mean_cosine_of_minus_005_is_minor_not_critical():
    # The case: frequent (60% of 200 steps) but weak on average (mean cosine -0.05).
    (f,) = pair_findings(pair(-0.05, 0.6, -0.2, n=200))
    assert f["code"] == "directional_conflict" and f["severity"] == "info"
    assert f["evidence"]["effect"] == "minor" and "weakly on average" in f["message"]
    assert "surgery has little to remove" in f["suggestion"]


def test_severity_follows_the_mean_cosine():
    (moderate,) = pair_findings(pair(-0.2, 0.7, -0.3, n=200))
    (strong,) = pair_findings(pair(-0.3, 0.7, -0.45, n=200))
    assert (moderate["severity"], strong["severity"]) == ("warning", "critical")
    assert "on 70% of 200 instrumented steps (95% interval" in strong["message"]
    assert "--seeds 0,1,2" in strong["suggestion"]


def test_a_rate_on_four_steps_does_not_fire_the_rate_rule():
    # 2 of 4 steps: Wilson [15%, 85%] straddles 30%: the data cannot tell.
    (f,) = pair_findings(pair(0.0, 0.5, -0.4, n=4))
    assert f["code"] == "too_few_steps" and f["severity"] == "info"
    assert f["suggestion"] == "Only 4 instrumented steps: lower --every (or raise --steps)."
    assert not is_conflict(pair(0.0, 0.5, -0.4, n=4))
    # The same 50% on 400 steps ([45%, 55%]) does fire it.
    (g,) = pair_findings(pair(0.0, 0.5, -0.4, n=400))
    assert g["code"] == "directional_conflict" and is_conflict(pair(0.0, 0.5, -0.4, n=400))
    # Sign noise on 400 steps is named as such, on 4 steps it is "too few steps".
    assert pair_findings(pair(0.0, 0.5, -0.03, n=400))[0]["code"] == "near_orthogonal"
    assert pair_findings(pair(0.0, 0.5, -0.03, n=4))[0]["code"] == "too_few_steps"


def test_the_cosine_rule_needs_no_rate_and_low_rates_say_nothing():
    # A mean cosine of -0.2 conflicts whatever the rate's interval.
    (f,) = pair_findings(pair(-0.2, 0.5, -0.4, n=4))
    assert f["code"] == "directional_conflict" and f["severity"] == "warning"
    # Below the threshold on the point estimate: nothing, even when the interval reaches it.
    assert pair_findings(pair(0.3, 0.25, -0.4, n=4)) == []
    # Old summaries without n: the rate is taken as it is.
    assert pair_findings(pair(0.0, 0.5, -0.4))[0]["code"] == "directional_conflict"
