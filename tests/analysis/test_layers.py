"""`rank_layers`: the one layer ranking, and the diagnosis and the layer table agreeing on it."""

from __future__ import annotations

import math

import pytest

from mtldiag.analysis.diagnose import diagnose
from mtldiag.analysis.layers import rank_layers
from mtldiag.report.tables import layer_data

LAYERS = ["l1", "l2", "l3"]


def pair(a: str, b: str, layers: dict[str, tuple[float, float]]) -> dict:
    return {
        "a": a,
        "b": b,
        "cosine_mean": -0.4,
        "conflict_rate": 0.8,
        "gms_mean": 0.5,
        "conflict_cosine_mean": -0.5,
        "layers": {k: {"conflict_rate": r, "cosine_mean": c} for k, (r, c) in layers.items()},
    }


# l1 and l2 tie on their worst pair's rate (90%); l2's worst pair pulls harder apart (-0.7 vs
# -0.2) though l1 conflicts more across pairs (mean 80% vs 50%). l3 has no instrumented value.
# l1's worst pair is a-b (-0.2 against a-c's -0.1) though a-c conflicts less often.
RUN = {
    "method": "ew",
    "status": "ok",
    "final_loss": {"a": 1.0, "b": 1.0, "c": 1.0},
    "pairs": [
        pair("a", "b", {"l1": (0.9, -0.2), "l2": (0.9, -0.7)}),
        pair("a", "c", {"l1": (0.7, -0.1), "l2": (0.1, 0.3), "l3": (float("nan"), 0.0)}),
    ],
}


def test_ranked_by_the_worst_pairs_mean_cosine():
    ranked = rank_layers(RUN, LAYERS)
    assert [s.layer for s in ranked] == ["l2", "l1"]
    assert ranked[0].worst_pair == ("a", "b") and ranked[0].worst_cosine == -0.7
    assert ranked[1].mean_rate == 0.8 and ranked[0].mean_rate == 0.5
    assert ranked[1].worst_pair == ("a", "b") and ranked[1].worst_cosine == -0.2
    assert ranked[0].depth == 2


def test_the_diagnosis_and_the_layer_table_name_the_same_layers():
    findings = diagnose(RUN, LAYERS)
    (location,) = [f for f in findings if f["code"] == "conflict_location"]
    summary = {"kind": "profile", "tasks": ["a", "b", "c"], "layers": LAYERS, "runs": [RUN]}
    table = [row[0] for row in layer_data(summary).rows]
    assert list(location["evidence"]["layers"]) == table == ["l2", "l1"]


def test_a_tiny_layer_cannot_top_the_list_on_noise():
    # A 64-parameter layer at mean cosine -0.1 over 4 steps: noise alone reaches 2/√(64·4) =
    # 0.125, so none of it counts; a 1e6-parameter layer at -0.05 (band 0.001) ranks first.
    def cell(cos):
        return {"conflict_rate": 0.5, "cosine_mean": cos, "conflict_rate_n": 4}

    run = {"pairs": [{"a": "a", "b": "b", "layers": {"bn": cell(-0.1), "conv": cell(-0.05)}}]}
    sizes = {"bn": 64, "conv": 1_000_000}
    ranked = rank_layers(run, ["bn", "conv"], sizes)
    assert [s.layer for s in ranked] == ["conv", "bn"]
    assert ranked[1].noise == pytest.approx(0.125) and ranked[1].beyond_noise == 0.0
    assert ranked[0].beyond_noise == pytest.approx(-0.05 + 2 / math.sqrt(4e6))
    assert ranked[0].share == pytest.approx(1e6 / (1e6 + 64))
    # Without parameter counts the raw mean cosine ranks: the small layer's -0.1 comes first.
    assert [s.layer for s in rank_layers(run, ["bn", "conv"])] == ["bn", "conv"]
    # Over 10 000 steps the same -0.1 is beyond the band (2/√640000 = 0.0025): it is real.
    run["pairs"][0]["layers"]["bn"]["conflict_rate_n"] = 10_000
    assert rank_layers(run, ["bn", "conv"], sizes)[0].layer == "bn"
