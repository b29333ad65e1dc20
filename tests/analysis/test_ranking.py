"""Δm%, Pareto dominance, sweep weights and the comparison table, against worked examples."""

import math

import pytest

from mtldiag.analysis.ranking import comparison_table, delta_m, dominates
from mtldiag.analysis.sweep import simplex_weights

LOW = {"a": False, "b": False}

# ---------------------------------------------------------------- Δm% (Maninis et al. 2019)


def test_delta_m_lower_is_better_by_hand():
    # a: (0.9 - 1)/1 = -10 %, b: (1.2 - 1)/1 = +20 %  ->  mean +5 %
    assert delta_m({"a": 0.9, "b": 1.2}, {"a": 1.0, "b": 1.0}, LOW) == pytest.approx(5.0)


def test_delta_m_sign_flips_for_higher_is_better():
    # b higher is better: going from 1.0 to 1.2 is a 20 % improvement -> (-10 - 20) / 2
    hib = {"a": False, "b": True}
    assert delta_m({"a": 0.9, "b": 1.2}, {"a": 1.0, "b": 1.0}, hib) == pytest.approx(-15.0)
    # accuracy 0.5 -> 0.8 (+60 %, better), error 1.0 -> 0.5 (-50 %, better): mean -55 %
    got = delta_m({"acc": 0.8, "err": 0.5}, {"acc": 0.5, "err": 1.0}, {"acc": True, "err": False})
    assert got == pytest.approx(-55.0)


def test_delta_m_of_the_reference_itself_is_zero_and_scale_free():
    ref = {"a": 3.0, "b": 0.02}
    assert delta_m(ref, ref, LOW) == 0.0
    # relative: a 1 % change counts the same on a task of scale 3 and of scale 0.02
    assert delta_m({"a": 3.03, "b": 0.02}, ref, LOW) == pytest.approx(
        delta_m({"a": 3.0, "b": 0.0202}, ref, LOW)
    )


def test_delta_m_undefined_cases_and_negative_reference():
    assert delta_m({"a": 1.0, "b": 1.0}, {"a": 0.0, "b": 1.0}, LOW) is None  # division by 0
    assert delta_m({"a": 1.0}, {"a": 1.0, "b": 1.0}, LOW) is None  # missing task
    assert delta_m({"a": None, "b": 1.0}, {"a": 1.0, "b": 1.0}, LOW) is None
    # a log-likelihood of -2 against -1 (higher is better) is worse: +100 %, not -100 %
    assert delta_m({"ll": -2.0}, {"ll": -1.0}, {"ll": True}) == pytest.approx(100.0)


# ---------------------------------------------------------------- Pareto dominance


def test_dominance_by_hand():
    a, b = {"a": 1.0, "b": 2.0}, {"a": 1.0, "b": 3.0}
    assert dominates(a, b, LOW)  # tie on a, better on b
    assert not dominates(b, a, LOW)
    assert not dominates(a, a, LOW)  # equal: not strictly better anywhere
    c = {"a": 0.5, "b": 5.0}
    assert not dominates(a, c, LOW) and not dominates(c, a, LOW)  # a trade-off
    hib = {"a": True, "b": True}
    assert dominates(b, a, hib) and not dominates(a, b, hib)
    assert not dominates({"a": 0.1, "b": None}, b, LOW)


# ---------------------------------------------------------------- simplex weights


@pytest.mark.parametrize(
    ("T", "K"), [(2, 1), (2, 3), (2, 7), (3, 1), (3, 3), (3, 4), (3, 10), (4, 5), (6, 9)]
)
def test_simplex_weights_sum_to_one_positive_and_distinct(T, K):  # noqa: N803
    ws = simplex_weights(T, K, seed=0)
    assert len(ws) == K
    assert all(len(w) == T and math.isclose(sum(w), 1.0) and min(w) > 0 for w in ws)
    assert len({tuple(round(x, 9) for x in w) for w in ws}) == K


def test_simplex_grid_for_two_and_three_tasks():
    assert simplex_weights(2, 3, 0) == [[0.25, 0.75], [0.5, 0.5], [0.75, 0.25]]
    assert simplex_weights(3, 1, 0) == [[1 / 3] * 3]
    # K = 3: the interior of the quarter grid, the three permutations of (1/2, 1/4, 1/4)
    got = {tuple(w) for w in simplex_weights(3, 3, 0)}
    assert got == {(0.5, 0.25, 0.25), (0.25, 0.5, 0.25), (0.25, 0.25, 0.5)}


def test_dirichlet_draws_are_deterministic_per_seed():
    assert simplex_weights(4, 3, seed=1) == simplex_weights(4, 3, seed=1)
    assert simplex_weights(4, 3, seed=1) != simplex_weights(4, 3, seed=2)
    assert simplex_weights(4, 0, 0) == []


# ---------------------------------------------------------------- the comparison table


def run(
    label, seed, metrics=None, status="ok", conflict=0.5, cosine=-0.1, ms=1.0, mb=100.0, error=None
):
    return {
        "method": label,
        "seed": seed,
        "status": status,
        "error": error,
        "metrics": metrics if status == "ok" else None,
        "pairs": [{"a": "a", "b": "b", "conflict_rate": conflict, "cosine_mean": cosine}],
        "step_time_ms_median": ms,
        "peak_memory_mb": mb,
    }


NAN_ERROR = "mgda (seed 1): loss of task 'a' is nan at step 12."


def hand_runs():
    return [
        run("single:a", 0, {"a": 1.0}),
        run("single:a", 1, {"a": 1.0}),
        run("single:b", 0, {"b": 2.0}),
        run("single:b", 1, {"b": 2.0}),
        # Δm per seed: (10 + 10)/2 = 10 and (30 + 30)/2 = 30 -> 20 ± 14.14
        run("ew", 0, {"a": 1.1, "b": 2.2}, conflict=0.4, cosine=-0.1, ms=2.0, mb=100.0),
        run("ew", 1, {"a": 1.3, "b": 2.6}, conflict=0.6, cosine=-0.3, ms=4.0, mb=120.0),
        # Δm per seed: (0 + 20)/2 = 10 and (20 + 20)/2 = 20 -> 15 ± 7.07
        run("pcgrad", 0, {"a": 1.0, "b": 2.4}),
        run("pcgrad", 1, {"a": 1.2, "b": 2.4}),
        # Δm (15 + 17.5)/2 = 16.25 ± 0; Pareto-dominates ew (1.2, 2.4), not pcgrad (1.1, 2.4)
        run("sweep:0.5,0.5", 0, {"a": 1.15, "b": 2.35}),
        run("sweep:0.5,0.5", 1, {"a": 1.15, "b": 2.35}),
        # one ok seed: Δm (50 - 5)/2 = 22.5; b better than single-task: no negative transfer
        run("mgda", 0, {"a": 1.5, "b": 1.9}),
        run("mgda", 1, status="failed", error=NAN_ERROR),
    ]


def test_table_ranks_by_delta_m_against_single_task_models():
    t = comparison_table(hand_runs(), LOW, "train_loss_tail")
    assert t["reference"] == "single_task"
    assert [r["label"] for r in t["rows"]] == ["pcgrad", "sweep:0.5,0.5", "ew", "mgda"]
    assert [r["rank"] for r in t["rows"]] == [1, 2, 3, 4]
    rows = {r["label"]: r for r in t["rows"]}
    ew = rows["ew"]
    assert ew["delta_m"] == pytest.approx(20.0)
    assert ew["delta_m_std"] == pytest.approx(math.sqrt(200))  # stdev of 10 and 30
    assert ew["metric"]["a"] == {"mean": pytest.approx(1.2), "std": pytest.approx(0.1 * 2**0.5)}
    assert ew["conflict_rate"] == pytest.approx(0.5) and ew["cosine_mean"] == pytest.approx(-0.2)
    assert ew["step_time_ms"] == pytest.approx(3.0) and ew["peak_memory_mb"] == 120.0
    assert rows["pcgrad"]["delta_m"] == pytest.approx(15.0)
    assert rows["pcgrad"]["delta_m_std"] == pytest.approx(math.sqrt(50))
    assert rows["sweep:0.5,0.5"]["delta_m"] == pytest.approx(16.25)
    assert rows["sweep:0.5,0.5"]["kind"] == "sweep" and ew["kind"] == "method"
    assert (rows["mgda"]["seeds"], rows["mgda"]["failed"]) == (1, 1)
    assert rows["mgda"]["delta_m"] == pytest.approx(22.5) and rows["mgda"]["delta_m_std"] is None
    assert rows["mgda"]["delta_m_ci95"] is None  # one seed: no interval
    assert t["single_task"] == {"a": {"mean": 1.0, "std": 0.0}, "b": {"mean": 2.0, "std": 0.0}}


def test_table_dominance_negative_transfer_failures_and_noise_verdict():
    t = comparison_table(hand_runs(), LOW, "train_loss_tail")
    rows = {r["label"]: r for r in t["rows"]}
    assert rows["ew"]["dominated_by"] == ["sweep:0.5,0.5"]
    assert rows["pcgrad"]["dominated_by"] == [] and rows["mgda"]["dominated_by"] == []
    assert t["negative_transfer"] == ["a"]  # every run is worse than 1.0 on a; mgda beats b
    assert t["failed_runs"] == [{"label": "mgda", "seed": 1, "error": NAN_ERROR}]
    v = t["verdict"]
    assert v.startswith("pcgrad ranks first by Δm%")
    # pcgrad 10, 20 minus sweep 16.25, 16.25 per seed: -6.25 and 3.75, mean -1.25, s 10/√2.
    fvs = t["first_vs_second"]
    assert (fvs["seeds"], fvs["diff_mean"]) == (2, pytest.approx(-1.25))
    assert fvs["diff_std"] == pytest.approx(10 / 2**0.5)
    assert fvs["diff_ci95"] == [
        pytest.approx(-1.25 - 12.706204736 * 5),
        pytest.approx(-1.25 + 12.706204736 * 5),
    ]
    assert t["verdict_kind"] == "too_few_seeds"
    assert "cannot be judged from 2 paired seeds" in v
    # pcgrad's b is 2.4 against 2.0 on both seeds: +20% with a zero-width interval.
    assert rows["pcgrad"]["worse_on"] == ["b"]
    assert "worse than the reference beyond noise on 'b' (+20.0%" in v
    assert "Pareto-dominates ew" in v and "Negative transfer on a" in v
    assert "mgda (seed 1)" in v and "training loss" in v


def test_table_has_exactly_the_schema_keys():
    t = comparison_table(hand_runs(), LOW, "val_loss")
    assert list(t) == [
        "evaluation",
        "reference",
        "higher_is_better",
        "rows",
        "single_task",
        "negative_transfer",
        "first_vs_second",
        "verdict_kind",
        "verdict",
        "failed_runs",
    ]
    assert set(t["rows"][0]) == {
        "label",
        "kind",
        "rank",
        "seeds",
        "failed",
        "metric",
        "delta_m_per_seed",
        "delta_m",
        "delta_m_std",
        "delta_m_ci95",
        "per_task",
        "worse_on",
        "conflict_rate",
        "cosine_mean",
        "step_time_ms",
        "peak_memory_mb",
        "dominated_by",
    }


def test_verdict_kinds_from_the_paired_seeds():
    def runs(seeds, gap):
        return [run("ew", s, {"a": 1.0 + s * 0.01, "b": 1.0}) for s in seeds] + [
            run("pcgrad", s, {"a": 1.0 - gap[s] + s * 0.01, "b": 1.0}) for s in seeds
        ]

    # a: -50%, -49.5%, -49.0% per seed against the same seed's ew; b unchanged -> Δm ≈ -25.
    t = comparison_table(runs((0, 1, 2), [0.5] * 3), LOW, "train_loss_tail")
    assert [r["label"] for r in t["rows"]] == ["pcgrad", "ew"]
    assert t["verdict_kind"] == "significant"
    assert "pcgrad beats ew beyond seed noise" in t["verdict"]
    # The same clear gap on two seeds: too few to judge, and the verdict says so.
    t = comparison_table(runs((0, 1), [0.5] * 2), LOW, "train_loss_tail")
    assert t["verdict_kind"] == "too_few_seeds" and "beyond seed noise" not in t["verdict"]
    # Gaps of +10%, -30%, -5% of a: the interval of the mean includes 0.
    t = comparison_table(runs((0, 1, 2), [-0.1, 0.3, 0.05]), LOW, "train_loss_tail")
    assert t["verdict_kind"] == "within_noise" and "includes 0" in t["verdict"]
    # One method only.
    t = comparison_table(runs((0,), [0.0])[:1], LOW, "train_loss_tail")
    assert t["verdict_kind"] == "single_method" and t["first_vs_second"] is None


def test_without_single_task_delta_m_is_against_ew_and_says_so():
    runs = [run("ew", 0, {"a": 2.0, "b": 4.0}), run("uw", 0, {"a": 1.0, "b": 4.0})]
    t = comparison_table(runs, LOW, "train_loss_tail")
    assert t["reference"] == "ew" and "single_task" not in t
    rows = {r["label"]: r for r in t["rows"]}
    assert rows["ew"]["delta_m"] == 0.0
    assert rows["uw"]["delta_m"] == pytest.approx(-25.0)  # (-50 % + 0) / 2
    assert "against equal weighting (ew)" in t["verdict"]
    assert "cannot be judged from 1 paired seed: run at least 3 seeds" in t["verdict"]
    assert t["negative_transfer"] == []


def test_without_any_reference_ranks_by_mean_per_task_rank():
    # per-task ranks: x (1, 3) -> 2, y (2, 1) -> 1.5, z (3, 2) -> 2.5
    runs = [
        run("x", 0, {"a": 1.0, "b": 3.0}),
        run("y", 0, {"a": 2.0, "b": 1.0}),
        run("z", 0, {"a": 3.0, "b": 2.0}),
    ]
    t = comparison_table(runs, LOW, "eval_fn")
    assert t["reference"] is None
    assert [r["label"] for r in t["rows"]] == ["y", "x", "z"]
    assert all(r["delta_m"] is None for r in t["rows"])
    assert "mean per-task rank" in t["verdict"] and "No Δm%" in t["verdict"]
    # higher is better on a reverses a's ranks: x (3, 3), y (2, 1), z (1, 2) -> y, z, x
    t = comparison_table(runs, {"a": True, "b": False}, "eval_fn")
    assert [r["label"] for r in t["rows"]] == ["y", "z", "x"]


def test_negative_transfer_respects_higher_is_better():
    hib = {"acc": True}
    runs = [
        run("single:acc", 0, {"acc": 0.9}),
        run("ew", 0, {"acc": 0.8}),
        run("pcgrad", 0, {"acc": 0.85}),
    ]
    t = comparison_table(runs, hib, "eval_fn")
    assert t["negative_transfer"] == ["acc"]
    assert t["rows"][0]["label"] == "pcgrad"  # higher accuracy: lower Δm%
    assert t["rows"][0]["delta_m"] == pytest.approx(100 * 0.05 / 0.9)  # 5.6 % worse than 0.9
    runs.append(run("mgda", 0, {"acc": 0.95}))
    assert comparison_table(runs, hib, "eval_fn")["negative_transfer"] == []


def test_a_method_that_failed_on_every_seed_is_listed_last_without_rank():
    runs = [
        run("ew", 0, {"a": 1.0, "b": 1.0}),
        run("mgda", 0, status="failed", error="loss of task 'b' is inf at step 3"),
    ]
    t = comparison_table(runs, LOW, "train_loss_tail")
    assert [(r["label"], r["rank"], r["seeds"], r["failed"]) for r in t["rows"]] == [
        ("ew", 1, 1, 0),
        ("mgda", None, 0, 1),
    ]
    assert t["rows"][1]["metric"]["a"] == {"mean": None, "std": None}
    assert "Failed: mgda (seed 0)" in t["verdict"]


def test_verdict_warns_when_one_task_drives_delta_m():
    # reference a = 0.01: moving it to 0.03 is +200 %, dwarfing b's -10 %
    runs = [run("ew", 0, {"a": 0.01, "b": 1.0}), run("mgda", 0, {"a": 0.03, "b": 0.9})]
    t = comparison_table(runs, LOW, "train_loss_tail")
    assert t["rows"][1]["delta_m"] == pytest.approx((200 - 10) / 2)
    assert "task 'a' makes up 95% of the relative changes" in t["verdict"]
    balanced = [run("ew", 0, {"a": 1.0, "b": 1.0}), run("mgda", 0, {"a": 1.2, "b": 0.9})]
    assert "Caution" not in comparison_table(balanced, LOW, "train_loss_tail")["verdict"]
