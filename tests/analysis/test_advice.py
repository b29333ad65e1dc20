"""The diagnosis after a comparison, one case per branch, on comparisons built from hand-made
runs (so the pairing by seed is the comparison table's own)."""

import pytest

from mtldiag.analysis.advice import comparison_findings, method_text
from mtldiag.analysis.diagnose import diagnose
from mtldiag.analysis.ranking import comparison_table

LOW = {"a": False, "b": False}
LAYERS = ["l1", "l2"]


def run(label, seed, a, b=1.0):
    return {"method": label, "seed": seed, "status": "ok", "metrics": {"a": a, "b": b}}


def table(per_method):
    """``{label: [a on seed 0, a on seed 1, ...]}`` -> the comparison (ew's a is 1 + s/100)."""
    runs = []
    for label, values in per_method.items():
        runs += [run(label, s, v + s * 0.01) for s, v in enumerate(values)]
    return comparison_table(runs, LOW, "train_loss_tail")


# The ew run the diagnosis reads: a strong conflict, strongest in the deep layer l2.
EW_RUN = {
    "loss_mean": {"a": 1.0, "b": 1.0},
    "grad_norm_mean": {"a": 1.0, "b": 1.0},
    "pairs": [
        {
            "a": "a",
            "b": "b",
            "cosine_mean": -0.4,
            "conflict_rate": 0.9,
            "conflict_cosine_mean": -0.5,
            "gms_mean": 0.9,
            "layers": {
                "l1": {"cosine_mean": 0.2, "conflict_rate": 0.1},
                "l2": {"cosine_mean": -0.6, "conflict_rate": 0.95},
            },
        }
    ],
}


def codes(findings):
    return [f["code"] for f in findings]


def test_a_method_that_won_beyond_noise_is_suggested_with_its_hyper_parameters():
    comp = table({"ew": [1.0] * 3, "cagrad:c=0.4": [0.5] * 3, "pcgrad": [0.98, 1.0, 1.02]})
    (f,) = comparison_findings(comp)
    assert f["code"] == "comparison_winner" and f["evidence"]["method"] == "cagrad:c=0.4"
    assert f["suggestion"] == "Train with cagrad (c=0.4, rescale=1, reduction=sum)."
    # a: -0.5/1, -0.5/1.01, -0.5/1.02 -> Δm -25, -24.7525, -24.5098; mean -24.7541.
    assert f["evidence"]["diff_mean"] == pytest.approx(-24.7541, abs=1e-4)
    assert "beat ew beyond seed noise" in f["message"] and "3 seeds" in f["message"]
    findings = diagnose(EW_RUN, LAYERS, comparison=comp)
    conflict = next(f for f in findings if f["code"] == "directional_conflict")
    assert "mtldiag compare" not in conflict["suggestion"]
    assert "see its finding below" in conflict["suggestion"]
    assert codes(findings)[-1] == "comparison_winner"


def test_a_weighting_winner_says_surgery_did_not_help():
    comp = table({"ew": [1.0] * 3, "uncertainty": [0.5] * 3, "pcgrad": [0.98, 1.0, 1.02]})
    (f,) = comparison_findings(comp)
    assert f["evidence"]["method"] == "uncertainty"
    assert "No gradient-surgery method beat ew beyond noise" in f["message"]


def test_no_winner_points_to_the_next_lever_and_the_layer():
    # pcgrad's a: +2%, -2%, +1% of ew's (per seed): its interval includes 0.
    comp = table({"ew": [1.0] * 3, "pcgrad": [1.02, 0.98 - 0.0002, 1.0 + 0.0102]})
    assert comp["verdict_kind"] == "within_noise"
    findings = diagnose(EW_RUN, LAYERS, comparison=comp)
    f = findings[-1]
    assert f["code"] == "comparison_no_winner" and f["severity"] == "warning"
    assert "Gradient surgery is not the lever here" in f["suggestion"]
    assert "branching the network before 'l2'" in f["suggestion"]  # the top-ranked layer
    assert "init_loss" in f["suggestion"]
    # The conflict finding no longer tells the user to run the compare just made.
    conflict = next(g for g in findings if g["code"] == "directional_conflict")
    assert "--methods" not in conflict["suggestion"]


def test_too_few_seeds_is_inconclusive_and_says_how_many():
    comp = table({"ew": [1.0] * 2, "pcgrad": [0.5, 0.52]})
    (f,) = comparison_findings(comp)
    assert f["code"] == "comparison_inconclusive" and "only 2 paired seeds" in f["message"]
    assert "seeds" in f["suggestion"] and f["suggestion"].startswith("For pcgrad against ew")


def test_without_ew_there_is_nothing_to_pair_with():
    comp = table({"pcgrad": [1.0] * 3, "mgda": [0.5] * 3})
    assert comparison_findings(comp) == []
    # Without a comparison the conflict finding still suggests running one.
    conflict = next(f for f in diagnose(EW_RUN, LAYERS) if f["code"] == "directional_conflict")
    assert "mtldiag compare" in conflict["suggestion"]


def test_method_text_lists_defaults_and_keeps_unknown_labels():
    assert method_text("pcgrad") == "pcgrad (reduction=sum)"
    assert method_text("nonsense:x=1") == "nonsense:x=1"
