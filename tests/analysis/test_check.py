"""`mtldiag.analysis.check`, `rules`, `measure`: metric paths, bounds, renderers on hand-written
summaries.

The summary below has two ok seeds of `ew` (plus a failed seed whose numbers must be ignored)
and one seed of `pcgrad`; every expected value is the mean of the two ew seeds, worked out by
hand in the comments.
"""

from __future__ import annotations

import copy
import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
import yaml

from mtldiag.analysis.check import evaluate, load_summary, run_check
from mtldiag.analysis.rules import (
    Bound,
    CheckError,
    MetricPath,
    parse_metric,
    parse_rules,
    rules_from_run,
)
from mtldiag.report.check_output import render_json, render_junit, render_markdown

Triple = tuple[float, float, float]  # (conflict_rate, cosine_mean, gms_mean)


def values(v: Triple) -> dict[str, float]:
    return {"conflict_rate": v[0], "cosine_mean": v[1], "gms_mean": v[2]}


def pair(a: str, b: str, whole: Triple, trunk0: Triple, trunk2: Triple) -> dict[str, Any]:
    """One pair entry: values over all shared parameters, then per layer."""
    return {
        "a": a,
        "b": b,
        **values(whole),
        "layers": {"trunk.0": values(trunk0), "trunk.2": values(trunk2)},
    }


def run(method: str, seed: int, status: str = "ok", **fields: Any) -> dict[str, Any]:
    return {"method": method, "seed": seed, "status": status, **fields}


EW0 = run(
    "ew",
    0,
    final_loss={"a": 1.0, "b": 2.0, "c": 3.0},
    grad_norm_ratio=4.0,
    step_time_ms_median=10.0,
    peak_memory_mb=100.0,
    pairs=[
        pair("a", "b", (0.6, -0.2, 0.5), (0.8, -0.5, 0.2), (0.1, 0.3, 0.9)),
        pair("a", "c", (0.2, 0.1, 0.9), (0.0, 0.5, 0.9), (0.9, -0.6, 0.8)),
        pair("b", "c", (0.4, -0.4, 0.3), (0.2, 0.1, 0.6), (0.3, 0.0, 0.4)),
    ],
)
EW1 = run(
    "ew",
    1,
    final_loss={"a": 2.0, "b": 4.0, "c": 1.0},
    grad_norm_ratio=6.0,
    step_time_ms_median=14.0,
    peak_memory_mb=200.0,
    pairs=[
        pair("a", "b", (0.4, -0.4, 0.7), (0.6, -0.3, 0.4), (0.3, 0.1, 0.7)),
        pair("a", "c", (0.0, 0.3, 0.7), (0.2, 0.3, 0.7), (0.7, -0.4, 0.6)),
        pair("b", "c", (0.2, 0.0, 0.5), (0.0, 0.3, 0.8), (0.1, 0.2, 0.2)),
    ],
)
# A failed seed with absurd numbers: averaging it in would break every expected value below.
EW2_FAILED = {
    **copy.deepcopy(EW0),
    "seed": 2,
    "status": "failed",
    "grad_norm_ratio": 1e9,
    "final_loss": {"a": None, "b": 1e9, "c": 1e9},
}
PC0 = run(
    "pcgrad",
    0,
    final_loss={"a": 0.5, "b": 0.25, "c": 0.75},
    grad_norm_ratio=2.0,
    step_time_ms_median=30.0,
    peak_memory_mb=120.0,
    pairs=[
        pair(x, y, (0.1, 0.2, 0.9), (0.1, 0.2, 0.9), (0.1, 0.2, 0.9))
        for x, y in (("a", "b"), ("a", "c"), ("b", "c"))
    ],
)


def profile_summary() -> dict[str, Any]:
    return {
        "schema": "mtldiag.summary/1",
        "kind": "profile",
        "name": "toy",
        "status": "complete",
        "tasks": ["a", "b", "c"],
        "layers": ["trunk.0", "trunk.2"],
        "runs": copy.deepcopy([EW0, EW1, EW2_FAILED, PC0]),
    }


def compare_summary() -> dict[str, Any]:
    s = profile_summary()
    s["kind"] = "compare"
    # A single-task baseline listed first: the default method must skip it.
    s["runs"].insert(0, run("single:a", 0, final_loss={"a": 0.1}, pairs=[]))
    s["comparison"] = {
        "evaluation": "val_loss",
        "reference": "ew",
        "higher_is_better": {"a": False, "b": False, "c": False},
        "rows": [
            {
                "label": "pcgrad",
                "kind": "method",
                "rank": 1,
                "seeds": 1,
                "failed": 0,
                "metric": {
                    "a": {"mean": 0.4, "std": 0.0},
                    "b": {"mean": 0.2, "std": 0.0},
                    "c": {"mean": 0.7, "std": 0.0},
                },
                "delta_m": -3.2,
                "delta_m_std": 0.0,
            },
            {
                "label": "ew",
                "kind": "method",
                "rank": 2,
                "seeds": 2,
                "failed": 1,
                "metric": {
                    "a": {"mean": 0.5, "std": 0.1},
                    "b": {"mean": 0.3, "std": 0.1},
                    "c": {"mean": 0.6, "std": 0.1},
                },
                "delta_m": 0.0,
                "delta_m_std": 0.0,
            },
        ],
    }
    return s


def check(
    rules: list[dict[str, Any]],
    summary: dict[str, Any] | None = None,
    baseline: dict[str, Any] | None = None,
):
    return evaluate(summary or profile_summary(), parse_rules(rules), baseline, run="run")


def one(rule: dict[str, Any], summary=None, baseline=None):
    return check([rule], summary, baseline).results[0]


# (metric path, expected value as the mean of ew seeds 0 and 1, expected detail)
PROFILE_PATHS = [
    ("conflict_rate[a,b]", 0.5, ""),  # (0.6 + 0.4) / 2
    ("conflict_rate[b,a]", 0.5, ""),  # pair order does not matter
    ("conflict_rate", 0.5, "worst pair a,b"),  # ab 0.5 > bc 0.3 > ac 0.1
    ("cosine_mean[a,c]", 0.2, ""),  # (0.1 + 0.3) / 2
    ("cosine_mean", -0.3, "worst pair a,b"),  # ab -0.3 < bc -0.2 < ac 0.2
    ("gms_mean[a,b]", 0.6, ""),
    ("gms_mean", 0.4, "worst pair b,c"),  # bc 0.4 < ab 0.6 < ac 0.8
    ("conflict_rate[a,b]@trunk.0", 0.7, ""),  # (0.8 + 0.6) / 2
    ("conflict_rate@trunk.2", 0.8, "worst pair a,c"),  # ac (0.9 + 0.7) / 2
    ("cosine_mean@trunk.2", -0.5, "worst pair a,c"),  # ac (-0.6 - 0.4) / 2
    ("gms_mean[b,c]@trunk.2", 0.3, ""),
    ("gms_mean@trunk.0", 0.3, "worst pair a,b"),  # ab (0.2 + 0.4) / 2
    ("final_loss[a]", 1.5, ""),
    ("final_loss[b]", 3.0, ""),
    ("grad_norm_ratio", 5.0, ""),
    ("step_time_ms", 12.0, ""),
    ("peak_memory_mb", 150.0, ""),
]


@pytest.mark.parametrize(("path", "expected", "detail"), PROFILE_PATHS)
def test_profile_metric_value_mean_over_ok_seeds(path: str, expected: float, detail: str):
    r = one({"metric": path, "max": 1e6})
    assert r.value == pytest.approx(expected)
    assert r.detail == detail and r.method == "ew" and r.baseline is None


@pytest.mark.parametrize(("path", "expected", "detail"), PROFILE_PATHS)
def test_min_and_max_pass_and_fail_around_the_value(path: str, expected: float, detail: str):
    lo, hi = expected - 0.01, expected + 0.01
    rules = [
        {"metric": path, "max": hi},
        {"metric": path, "max": lo},
        {"metric": path, "min": lo},
        {"metric": path, "min": hi},
    ]
    results = check(rules).results
    assert [r.passed for r in results] == [True, False, True, False]
    assert " > " in results[1].failures[0] and " < " in results[3].failures[0]


def test_compare_metrics_read_the_comparison_rows_default_skips_single_task():
    s = compare_summary()
    assert one({"metric": "metric[a]", "max": 1}, s).value == pytest.approx(0.5)  # ew row
    assert one({"metric": "delta_m", "max": 1}, s).value == pytest.approx(0.0)
    r = one({"metric": "delta_m", "max": -3.0, "method": "pcgrad"}, s)
    assert r.passed and r.value == pytest.approx(-3.2) and r.method == "pcgrad"
    r = one({"metric": "metric[c]", "max": 0.65, "method": "pcgrad"}, s)
    assert not r.passed and r.value == pytest.approx(0.7)
    # Run-level metrics work on compare summaries too, per method.
    assert one({"metric": "final_loss[b]", "max": 1, "method": "pcgrad"}, s).value == 0.25
    assert one({"metric": "final_loss[a]", "max": 1, "method": "single:a"}, s).value == 0.1


def test_method_selector_and_default():
    r = one({"metric": "grad_norm_ratio", "max": 3, "method": "pcgrad"})
    assert r.passed and r.value == 2.0
    with pytest.raises(CheckError) as e:
        one({"metric": "grad_norm_ratio", "max": 3, "method": "pcgard"})
    assert "method 'pcgard' is not in the run" in e.value.message
    assert "Did you mean 'pcgrad'?" in e.value.message
    assert e.value.hint == "its run labels: ew, pcgrad"


def test_compare_metric_on_profile_run_is_an_error():
    with pytest.raises(CheckError, match="not a compare run"):
        one({"metric": "delta_m", "max": 0})
    s = compare_summary()
    s["comparison"]["reference"] = None
    with pytest.raises(CheckError, match="no reference"):
        one({"metric": "delta_m", "max": 0}, s)


# --- baseline bounds -------------------------------------------------------------------------


def scaled(factor: float) -> dict[str, Any]:
    """The profile summary with every ew final loss and timing multiplied by ``factor``."""
    s = profile_summary()
    for r in s["runs"]:
        if r["method"] == "ew":
            r["final_loss"] = {
                k: (v * factor if v is not None else None) for k, v in r["final_loss"].items()
            }
            r["step_time_ms_median"] *= factor
    return s


@pytest.mark.parametrize(
    ("rule", "factor", "passed", "limit"),
    [
        # baseline final_loss[b] = 3.0
        ({"metric": "final_loss[b]", "max_increase": "5%"}, 1.04, True, "<= 3.15 (baseline +5%)"),
        ({"metric": "final_loss[b]", "max_increase": "5%"}, 1.06, False, "<= 3.15 (baseline +5%)"),
        ({"metric": "final_loss[b]", "max_increase": 0.25}, 1.08, True, "<= 3.25 (baseline +0.25)"),
        ({"metric": "final_loss[b]", "max_increase": 0.25}, 1.1, False, "<= 3.25 (baseline +0.25)"),
        ({"metric": "final_loss[b]", "max_decrease": "10%"}, 0.91, True, ">= 2.7 (baseline -10%)"),
        ({"metric": "final_loss[b]", "max_decrease": "10%"}, 0.89, False, ">= 2.7 (baseline -10%)"),
        ({"metric": "final_loss[b]", "max_decrease": 0.5}, 0.85, True, ">= 2.5 (baseline -0.5)"),
        ({"metric": "final_loss[b]", "max_decrease": 0.5}, 0.8, False, ">= 2.5 (baseline -0.5)"),
        # timing: baseline 12 ms; a generous relative tolerance absorbs noise
        ({"metric": "step_time_ms", "max_increase": "50%"}, 1.4, True, "<= 18 (baseline +50%)"),
        ({"metric": "step_time_ms", "max_increase": "50%"}, 1.6, False, "<= 18 (baseline +50%)"),
    ],
)
def test_baseline_bounds(rule: dict[str, Any], factor: float, passed: bool, limit: str):
    r = one(rule, scaled(factor), baseline=profile_summary())
    assert r.passed is passed and r.limit == limit
    assert r.baseline == pytest.approx(3.0 if "final_loss" in rule["metric"] else 12.0)


def test_relative_bound_on_negative_baseline_uses_its_magnitude():
    # baseline worst cosine -0.3; max_decrease 10% -> limit -0.33
    r = one({"metric": "cosine_mean", "max_decrease": "10%"}, baseline=profile_summary())
    assert r.limit == ">= -0.33 (baseline -10%)" and r.passed


def test_worst_pair_is_found_separately_in_the_baseline():
    base = profile_summary()
    for r in base["runs"]:
        for p in r["pairs"]:  # in the baseline the worst pair is b,c with rate 0.9
            p["conflict_rate"] = 0.9 if (p["a"], p["b"]) == ("b", "c") else 0.0
    r = one({"metric": "conflict_rate", "max_increase": 0.0}, baseline=base)
    assert r.baseline == pytest.approx(0.9) and r.value == pytest.approx(0.5) and r.passed


def test_several_bounds_in_one_rule_fail_on_the_one_violated():
    r = one(
        {"metric": "grad_norm_ratio", "min": 1, "max": 4.5, "max_increase": "50%"},
        baseline=profile_summary(),
    )
    assert r.limits == (">= 1", "<= 4.5", "<= 7.5 (baseline +50%)")
    assert r.failures == ("5 > 4.5 (max 4.5)",)


def test_missing_value_fails_instead_of_passing():
    s = profile_summary()
    for r in s["runs"]:
        r["grad_norm_ratio"] = None  # a task with zero gradient: unbounded ratio
    r = one({"metric": "grad_norm_ratio", "max": 10}, s)
    assert not r.passed and r.failures == ("no value",)
    s = profile_summary()
    for r in s["runs"]:
        if r["method"] == "pcgrad":
            r["status"] = "failed"
    r = one({"metric": "final_loss[a]", "max": 10, "method": "pcgrad"}, s)
    assert not r.passed and r.failures == ("no value; no successful run of pcgrad",)


def test_a_layer_the_methods_runs_lack_says_which_layers_they_have():
    # A mixed-space comparison lists both spaces' layers; a parameter run has no
    # "representation" layer, so the rule fails naming the run's own layers.
    s = profile_summary()
    s["layers"] = ["trunk.0", "trunk.2", "representation"]
    r = one({"metric": "conflict_rate@representation", "max": 0.9, "method": "ew"}, s)
    assert not r.passed
    assert r.failures == (
        "no value; its runs have no layer 'representation' (theirs: trunk.0, trunk.2)",
    )
    assert one({"metric": "conflict_rate@trunk.0", "max": 0.9, "method": "ew"}, s).passed


# --- bad input -------------------------------------------------------------------------------


def test_relative_bound_without_baseline_is_an_error():
    expected = r"rule 1 \(final_loss\[b\]\) uses max_increase, which needs a baseline"
    with pytest.raises(CheckError, match=expected):
        one({"metric": "final_loss[b]", "max_increase": "5%"})


def test_baseline_with_other_tasks_is_an_error():
    base = profile_summary()
    base["tasks"] = ["a", "b"]
    with pytest.raises(CheckError) as e:
        one({"metric": "final_loss[b]", "max": 9}, baseline=base)
    assert e.value.message == "the baseline's tasks (a, b) differ from the run's (a, b, c)."


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("conflict_rate[a,d]", "conflict_rate[a,d]: task 'd' is not in the run."),
        ("final_loss[x]", "final_loss[x]: task 'x' is not in the run."),
        (
            "conflict_rate[a,b]@trunk.0x",
            "conflict_rate[a,b]@trunk.0x: layer 'trunk.0x' is not a "
            "shared layer of the run. Did you mean 'trunk.0'?",
        ),
    ],
)
def test_missing_task_or_layer_names_it(path: str, message: str):
    with pytest.raises(CheckError) as e:
        one({"metric": path, "max": 1})
    assert e.value.message == message


def test_missing_layer_in_baseline_says_baseline():
    base = profile_summary()
    base["layers"] = ["trunk.2"]
    with pytest.raises(CheckError, match="layer 'trunk.0' is not a shared layer of the baseline"):
        one({"metric": "conflict_rate@trunk.0", "max_increase": 0.1}, baseline=base)


def test_parse_metric_paths():
    assert parse_metric(" conflict_rate [ a , b ] @trunk.0 ") == MetricPath(
        "conflict_rate", pair=("a", "b"), layer="trunk.0"
    )
    assert str(parse_metric("gms_mean@enc.1")) == "gms_mean@enc.1"
    assert parse_metric("final_loss[seg]") == MetricPath("final_loss", task="seg")


@pytest.mark.parametrize(
    ("path", "fragment"),
    [
        ("conflict", "unknown metric 'conflict'. Did you mean 'conflict_rate'?"),
        ("final_loss", "final_loss takes one task, like final_loss[a]"),
        ("final_loss[a,b]", "final_loss takes one task"),
        ("grad_norm_ratio[a]", "grad_norm_ratio takes no '[...]'"),
        ("conflict_rate[a,a]", "takes a pair of two different tasks"),
        ("conflict_rate[a]", "takes a pair of two different tasks"),
        ("final_loss[a]@trunk.0", "'@trunk.0' applies only to conflict_rate"),
        ("cosine_mean[a,]", "empty task name"),
    ],
)
def test_bad_metric_paths(path: str, fragment: str):
    with pytest.raises(CheckError) as e:
        parse_rules([{"metric": "grad_norm_ratio", "max": 1}, {"metric": path, "max": 1}], "r.yaml")
    assert e.value.message.startswith("r.yaml: rule 2") and fragment in e.value.message


def test_unknown_metric_hint_lists_valid_metrics():
    with pytest.raises(CheckError) as e:
        parse_rules([{"metric": "loss", "max": 1}])
    for name in (
        "conflict_rate[a,b]",
        "final_loss[task]",
        "grad_norm_ratio",
        "step_time_ms",
        "peak_memory_mb",
        "metric[task]",
        "delta_m",
        "@layer",
    ):
        assert name in e.value.hint


@pytest.mark.parametrize(
    ("rule", "fragment"),
    [
        (
            {"metric": "final_loss[a]", "max_increase": "5 percent"},
            "malformed bound max_increase: '5 percent'",
        ),
        ({"metric": "final_loss[a]", "max": "5%"}, "malformed bound max: '5%'"),
        ({"metric": "final_loss[a]", "min": True}, "malformed bound min: True"),
        ({"metric": "final_loss[a]", "max": float("nan")}, "malformed bound max: nan"),
        ({"metric": "final_loss[a]"}, "has no bound"),
        ({"metric": "final_loss[a]", "maxx": 1}, "unknown key 'maxx'. Did you mean 'max'?"),
        ({"max": 1}, "has no 'metric'"),
        ("conflict_rate", "must be a mapping"),
    ],
)
def test_bad_rules(rule: Any, fragment: str):
    with pytest.raises(CheckError) as e:
        parse_rules([rule])
    assert fragment in e.value.message


def test_bound_parsing_accepts_numbers_strings_and_percentages():
    rules = parse_rules(
        {"checks": [{"metric": "delta_m", "max": "0.5", "max_increase": " 5 %", "max_decrease": 2}]}
    )
    assert rules[0].bounds == (
        Bound("max", 0.5),
        Bound("max_increase", 5.0, relative=True),
        Bound("max_decrease", 2.0),
    )
    assert rules[0].name == "delta_m max 0.5, max_increase 5%, max_decrease 2"
    assert parse_rules([{"metric": "delta_m", "max": 0, "name": "no loss"}])[0].name == "no loss"


def test_empty_rules_are_an_error():
    for data in ([], None, {"checks": []}, {"rules": []}):
        with pytest.raises(CheckError):
            parse_rules(data)


# --- files -----------------------------------------------------------------------------------


def test_load_summary_errors(tmp_path: Path):
    with pytest.raises(CheckError, match="run '.*nope' does not exist"):
        load_summary(tmp_path / "nope")
    with pytest.raises(CheckError) as e:
        load_summary(tmp_path, "baseline")
    assert "has no summary.json" in e.value.message and f"mtldiag report {tmp_path}" in e.value.hint
    (tmp_path / "summary.json").write_text("{oops")
    with pytest.raises(CheckError, match="not valid JSON"):
        load_summary(tmp_path)
    (tmp_path / "summary.json").write_text('{"a": 1}')
    with pytest.raises(CheckError, match="not an mtldiag summary"):
        load_summary(tmp_path)


def test_run_check_reads_spec_checks_and_accepts_summary_file(tmp_path: Path):
    (tmp_path / "summary.json").write_text(json.dumps(profile_summary()))
    with pytest.raises(CheckError, match="no rules"):
        run_check(tmp_path)
    (tmp_path / "spec.yaml").write_text(
        yaml.safe_dump(
            {
                "name": "toy",
                "checks": [
                    {"metric": "conflict_rate", "max": 0.45},
                    {"metric": "final_loss[a]", "max": 2},
                ],
            }
        )
    )
    assert len(rules_from_run(tmp_path)) == 2
    report = run_check(tmp_path / "summary.json", baseline=tmp_path)
    assert [r.passed for r in report.results] == [False, True]
    assert report.exit_code == 1 and report.headline() == "1 of 2 rules failed"


# --- renderers -------------------------------------------------------------------------------


def mixed_report():
    return check(
        [
            {"metric": "conflict_rate", "max": 0.4},
            {"metric": "final_loss[b]", "max_increase": "5%"},
            {"metric": "grad_norm_ratio", "max": 10, "name": "balanced | norms"},
        ],
        baseline=profile_summary(),
    )


def test_junit_parses_with_counts_and_failure_numbers():
    root = ET.fromstring(render_junit(mixed_report()))
    assert root.tag == "testsuites" and root.get("tests") == "3" and root.get("failures") == "1"
    (suite,) = root.findall("testsuite")
    assert suite.get("tests") == "3" and suite.get("failures") == "1" and suite.get("errors") == "0"
    cases = suite.findall("testcase")
    names = [c.get("name") for c in cases]
    assert names == ["conflict_rate max 0.4", "final_loss[b] max_increase 5%", "balanced | norms"]
    failure = cases[0].find("failure")
    assert failure is not None and failure.get("message") == "0.5 > 0.4 (max 0.4)"
    assert failure.text == "value 0.5, baseline 0.5, limit <= 0.4 (method ew, worst pair a,b)"
    assert cases[1].find("failure") is None and cases[2].find("failure") is None
    props = {p.get("name"): p.get("value") for p in suite.iter("property")}
    assert props == {"run": "run"}  # no baseline name given to evaluate()


def test_markdown_table():
    md = render_markdown(mixed_report())
    lines = md.splitlines()
    assert lines[0] == "### mtldiag check: ❌ failed — 1 of 3 rules failed"
    assert lines[2] == "Run `run` (toy)."
    assert lines[4] == "| rule | method | value | baseline | limit | result |"
    assert lines[6] == (
        "| `conflict_rate max 0.4` (worst pair a,b) | ew | 0.5 | 0.5 | <= 0.4 | "
        "❌ FAIL: 0.5 > 0.4 (max 0.4) |"
    )
    assert lines[7] == (
        "| `final_loss[b] max_increase 5%` | ew | 3 | 3 | <= 3.15 (baseline +5%) | ✅ PASS |"
    )
    assert lines[8].startswith("| `balanced \\| norms` | ew | 5 |")  # pipes escaped
    assert len(lines) == 9


def test_json_round_trip():
    data = json.loads(render_json(mixed_report()))
    assert data["passed"] is False and data["failed"] == 1
    first = data["results"][0]
    assert first["metric"] == "conflict_rate" and first["detail"] == "worst pair a,b"
    assert first["value"] == pytest.approx(0.5) and first["bounds"] == {"max": 0.4}
    assert data["results"][1]["bounds"] == {"max_increase": "5%"}
