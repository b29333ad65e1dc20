"""Preview: first-order effects of every Gramian method computed from G alone."""

from __future__ import annotations

import math

import torch

from mtldiag import methods
from mtldiag.analysis.preview import PreviewAccumulator, preview
from mtldiag.methods import RunContext


def test_preview_matches_the_direction_computed_from_j():
    g = torch.Generator().manual_seed(0)
    j = torch.randn(3, 12, generator=g, dtype=torch.float64)
    j[1] = -0.9 * j[0] + 0.2 * j[1]  # a strong conflict
    ms = [methods.create(n) for n in ("mgda", "pcgrad", "cagrad")]
    ew = methods.create("gradnormalize")
    for m in [*ms, ew]:
        m.reset(RunContext(tasks=("a", "b", "c")))
    res = preview(j @ j.T, torch.ones(3), [*ms, ew, methods.create("ew")])
    # Weighting methods are skipped; "ew" is the built-in reference, the plain sum, first.
    assert list(res) == ["ew", "mgda", "pcgrad", "cagrad", "gradnormalize"]
    s = j.sum(0)
    assert torch.allclose(torch.tensor(res["ew"]["gains"], dtype=torch.float64), j @ s)
    assert res["ew"]["all_decrease"] is False and abs(res["ew"]["angle_to_sum"]) < 1e-5
    ref = methods.create("cagrad")
    ref.reset(RunContext(tasks=("a", "b", "c")))
    d = ref.aggregate(j)
    s = j.sum(0)
    r = res["cagrad"]
    assert torch.allclose(torch.tensor(r["gains"], dtype=torch.float64), j @ d)
    expected = (j @ d) / j.norm(dim=1)
    assert torch.allclose(torch.tensor(r["gain_norm"], dtype=torch.float64), expected)
    angle = math.degrees(math.acos(float(d @ s / (d.norm() * s.norm()))))
    assert r["angle_to_sum"] == pytest_approx(angle)
    assert res["mgda"]["all_decrease"] is True


def pytest_approx(x):
    import pytest

    return pytest.approx(x, rel=1e-9, abs=1e-9)


def test_accumulator_rates_and_means():
    acc = PreviewAccumulator(["a", "b"], methods=["mgda", "cagrad:c=0.4", "ew"])
    assert [m.name for m in acc.methods] == ["mgda", "cagrad"]
    conflict = torch.tensor([[1.0, -0.99], [-0.99, 1.0]], dtype=torch.float64)  # cos -0.99
    aligned = torch.tensor([[1.0, 0.5], [0.5, 1.0]], dtype=torch.float64)
    # Plain sum under conflict: gains (0.01, 0.01) > 0; make it fail with unequal norms.
    unequal = torch.tensor([[4.0, -1.9], [-1.9, 1.0]], dtype=torch.float64)  # sum hurts b
    for gm in (conflict, aligned, unequal):
        acc.add(gm)
    rows = {r["method"]: r for r in acc.rows()}
    assert rows["mgda"]["steps"] == 3
    assert rows["mgda"]["all_decrease_rate"] == 1.0
    # The sum's gain for b on `unequal` is 1 - 1.9 < 0: MGDA fixes it, and its angle to the
    # sum is 0 only on the aligned, equal-norm step.
    assert rows["mgda"]["angle_to_sum_mean"] > 0
    assert set(rows["cagrad"]["gain_mean"]) == {"a", "b"}


def test_summary_is_json_safe_and_labels_non_default_hyperparameters():
    import json

    acc = PreviewAccumulator(["a", "b"], methods=["cagrad", "cagrad:c=0.9"])
    zero = torch.zeros(2, 2, dtype=torch.float64)  # no gradient at all: angles undefined
    acc.add(zero)
    out = acc.summary()
    assert [r["method"] for r in out["methods"]] == ["ew", "cagrad", "cagrad:c=0.9"]
    assert out["methods"][0]["angle_to_sum_mean"] is None  # NaN is not JSON
    assert out["methods"][0]["all_decrease_rate"] == 0.0  # a zero gain is no decrease
    json.dumps(out, allow_nan=False)
