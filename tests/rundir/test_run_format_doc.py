"""docs/run-format.md names every key a real summary.json and env.json hold, and no stale one.

A short real profile (with ``--preview``) and a real comparison (two methods, two seeds,
single-task baselines, one sweep point) are run without their report; their keys are compared
with the ``"key":`` occurrences of the doc's JSON examples.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

DOC = Path(__file__).parents[2] / "docs" / "run-format.md"
SAMPLE = Path(__file__).parents[2] / "sample_configs" / "synthetic.yaml"

# Keys the doc shows that these two runs cannot hold: a method's warnings, a rebuilt
# summary, torchrun, CUDA, an fp16 scaler, missing labels; and the example task names of the
# task-keyed dicts.
OPTIONAL = {"warnings", "rebuilt", "world_size", "backend", "cuda", "gpu"} | {
    "workers",  # compare --jobs N only
    "worker_threads",
    "skipped_steps",
    "present_steps",
}
EXAMPLE_NAMES = {"a", "b", "c"}


def doc_keys() -> set[str]:
    return set(re.findall(r'"([A-Za-z_][A-Za-z0-9_]*)"\s*:', DOC.read_text(encoding="utf-8")))


@pytest.fixture(scope="module")
def real_runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, dict, dict]:
    """(profile summary, compare summary, env.json) of two tiny real runs."""
    import mtldiag.report as report
    from mtldiag.runs.compare import run_compare
    from mtldiag.runs.profile import run_profile

    folder = tmp_path_factory.mktemp("format")
    with pytest.MonkeyPatch.context() as mp:  # the report files are not what this is about
        mp.setattr(report, "write_report", lambda *a, **k: None)
        prof = run_profile(SAMPLE, out=folder / "p", steps=3, every=1, device="cpu", preview=True)
        comp = run_compare(
            SAMPLE,
            methods="ew,pcgrad",
            seeds=[0, 1],
            steps=3,
            every=1,
            single_task=True,
            sweep=1,
            out=folder / "c",
            device="cpu",
        )
    env = json.loads((folder / "p" / "env.json").read_text())
    return prof.summary, comp.summary, env


def keys_of(
    profile: dict[str, Any], compare: dict[str, Any], env: dict[str, Any]
) -> dict[str, set[str]]:
    """Every fixed key, by where it sits (task-, layer- and label-keyed dicts left out)."""
    out: dict[str, set[str]] = {"env.json": set(env)}

    def add(where: str, d: dict) -> None:
        out.setdefault(where, set()).update(d)

    for s in (profile, compare):
        add("summary", s)
        for run in s["runs"]:
            add("run", run)
            for pair in run["pairs"]:
                add("pair", pair)
                for layer in pair["layers"].values():
                    add("pair layer", layer)
        for f in s["diagnosis"]:
            add("diagnosis", f)
    add("profile", profile["profile"])
    add("preview", profile["preview"])
    for row in profile["preview"]["methods"]:
        add("preview row", row)
    add("compare", compare["compare"])
    comp = compare["comparison"]
    add("comparison", comp)
    for row in comp["rows"]:
        add("comparison row", row)
        for cell in row["metric"].values():
            add("mean ± std", cell)
        for diff in row["per_task"].values():
            add("task difference", diff)
    add("first vs second", comp["first_vs_second"])
    for cell in comp["single_task"].values():
        add("mean ± std", cell)
    for f in comp["failed_runs"]:
        add("failed run", f)
    return out


def test_every_key_of_a_real_summary_is_documented(real_runs):
    profile, compare, env = real_runs
    assert (
        "preview" in profile and "comparison" in compare and "single_task" in compare["comparison"]
    )  # the runs exercise what they should
    documented = doc_keys()
    missing = {
        where: sorted(keys - documented)
        for where, keys in keys_of(profile, compare, env).items()
        if keys - documented
    }
    assert not missing, f"docs/run-format.md does not show these keys: {missing}"


def test_the_doc_shows_no_key_a_run_does_not_write(real_runs):
    written = set().union(*keys_of(*real_runs).values())
    stale = doc_keys() - written - OPTIONAL - EXAMPLE_NAMES
    assert not stale, f"docs/run-format.md shows keys no run writes: {sorted(stale)}"
    assert OPTIONAL <= doc_keys()
