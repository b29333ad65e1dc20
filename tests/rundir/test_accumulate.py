"""`RunAccumulator`: a run's summary entry from hand-made step metrics, checked by hand."""

from __future__ import annotations

import pytest

from mtldiag.engine.gramian import ALL_LAYERS, StepMetrics
from mtldiag.rundir.accumulate import RunAccumulator


def metrics(norms: list[float], cos_all: float, cos_l1: float, gms: float = 0.5) -> StepMetrics:
    """One instrumented step of two tasks (one pair) over the whole trunk and layer l1."""
    return StepMetrics(
        layers=[ALL_LAYERS, "l1"],
        pairs=[(0, 1)],
        grad_norm=norms,
        layer_norms=[],
        dot=[[0.0], [0.0]],
        cosine=[[cos_all], [cos_l1]],
        gms=[[gms], [gms]],
    )


@pytest.fixture
def entry() -> dict:
    acc = RunAccumulator("ew", 3, ["a", "b"], [ALL_LAYERS, "l1"])
    acc.add([4.0, 1.0], 10.0, 100.0, [1.0, 1.0], metrics([2.0, 1.0], -0.5, 0.2, gms=0.2))
    acc.add([3.0, 1.0], 30.0, 120.0, [2.0, 0.0], metrics([4.0, 1.0], 0.25, 0.4, gms=0.4))
    acc.add([2.0, 0.5], 20.0, 110.0, None, metrics([6.0, 1.0], -0.1, -0.6, gms=0.9))
    acc.add([1.0, 0.5], 40.0, 90.0, None, None)  # not instrumented
    return acc.result()


def test_counts_losses_time_and_memory(entry):
    assert (entry["method"], entry["seed"], entry["status"], entry["error"]) == (
        "ew",
        3,
        "ok",
        None,
    )
    assert entry["steps"] == 4 and entry["instrumented_steps"] == 3
    assert entry["initial_loss"] == {"a": 2.5, "b": 0.75}  # first 5 steps: all four
    assert entry["loss_mean"] == {"a": 2.5, "b": 0.75}
    assert entry["final_loss"] == {"a": 1.0, "b": 0.5}  # last 10% of 4 steps: the last one
    assert entry["step_time_ms_median"] == 25.0  # median of 10, 30, 20, 40
    assert entry["peak_memory_mb"] == 120.0


def test_grad_norms_and_weights_are_means_over_the_steps_that_have_them(entry):
    assert entry["grad_norm_mean"] == {"a": 4.0, "b": 1.0}  # (2 + 4 + 6) / 3
    assert entry["grad_norm_ratio"] == 4.0
    assert entry["weight_mean"] == {"a": 1.5, "b": 0.5}  # two weighted steps


def test_pair_cosine_conflict_rate_and_conflicting_cosine(entry):
    (pair,) = entry["pairs"]
    assert (pair["a"], pair["b"]) == ("a", "b")
    assert pair["cosine_mean"] == pytest.approx((-0.5 + 0.25 - 0.1) / 3)
    assert pair["conflict_rate"] == pytest.approx(2 / 3)  # steps 0 and 2 have cosine < 0
    assert pair["conflict_cosine_mean"] == pytest.approx(-0.3)  # (-0.5 - 0.1) / 2
    assert pair["gms_mean"] == pytest.approx(0.5)  # (0.2 + 0.4 + 0.9) / 3
    l1 = pair["layers"]["l1"]
    assert list(pair["layers"]) == ["l1"]  # the whole trunk is the pair's own numbers
    assert l1["cosine_mean"] == pytest.approx(0.0)
    assert l1["conflict_rate"] == pytest.approx(1 / 3)
    assert l1["conflict_cosine_mean"] == pytest.approx(-0.6)


def test_no_instrumented_step_leaves_the_gradient_numbers_undefined():
    acc = RunAccumulator("ew", 0, ["a", "b"], [ALL_LAYERS])
    acc.add([1.0, 2.0], 5.0, 1.0, None, None)
    out = acc.result()
    assert out["grad_norm_mean"] == {"a": None, "b": None} and out["grad_norm_ratio"] is None
    assert out["pairs"][0]["conflict_rate"] is None
    assert out["pairs"][0]["conflict_cosine_mean"] is None


def test_a_zero_gradient_makes_the_ratio_undefined_and_nan_losses_are_not_the_final_loss():
    acc = RunAccumulator("ew", 0, ["a", "b"], [ALL_LAYERS])
    for step in range(10):
        acc.add([float(step), 1.0], 1.0, 1.0, None, metrics([1.0, 0.0], 0.5, 0.5))
    acc.add([float("nan"), 1.0], 1.0, 1.0, None, None)
    acc.fail("failed", "NaN loss in task 'a' at step 10")
    out = acc.result()
    assert out["grad_norm_ratio"] is None
    assert out["final_loss"]["a"] == 9.0  # the tail (2 steps) without its NaN row
    assert out["loss_mean"]["a"] is None  # NaN is never written
    assert (out["status"], out["error"]) == ("failed", "NaN loss in task 'a' at step 10")
