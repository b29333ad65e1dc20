"""`rank_layers`: the one layer ranking, and the diagnosis and the layer table agreeing on it."""

from __future__ import annotations

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
RUN = {
    "method": "ew",
    "status": "ok",
    "final_loss": {"a": 1.0, "b": 1.0, "c": 1.0},
    "pairs": [
        pair("a", "b", {"l1": (0.9, -0.2), "l2": (0.9, -0.7)}),
        pair("a", "c", {"l1": (0.7, -0.1), "l2": (0.1, 0.3), "l3": (float("nan"), 0.0)}),
    ],
}


def test_worst_rate_then_its_cosine_then_the_mean_rate():
    ranked = rank_layers(RUN, LAYERS)
    assert [s.layer for s in ranked] == ["l2", "l1"]
    assert ranked[0].worst_pair == ("a", "b") and ranked[0].worst_cosine == -0.7
    assert ranked[1].mean_rate == 0.8 and ranked[0].mean_rate == 0.5
    assert ranked[0].depth == 2


def test_the_diagnosis_and_the_layer_table_name_the_same_layers():
    findings = diagnose(RUN, LAYERS)
    (location,) = [f for f in findings if f["code"] == "conflict_location"]
    summary = {"kind": "profile", "tasks": ["a", "b", "c"], "layers": LAYERS, "runs": [RUN]}
    table = [row[0] for row in layer_data(summary).rows]
    assert list(location["evidence"]["layers"]) == table == ["l2", "l1"]
