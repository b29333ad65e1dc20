"""`mtldiag.rundir.schema`: the run-label rules and the reference run, on hand-made runs."""

from __future__ import annotations

from mtldiag.rundir.schema import (
    is_baseline,
    label_kind,
    new_summary,
    reference_run,
    single_label,
    sweep_label,
)

TASKS = ["a", "b"]


def run(method: str, seed: int = 0, status: str = "ok", tasks: list[str] = TASKS) -> dict:
    return {"method": method, "seed": seed, "status": status, "final_loss": dict.fromkeys(tasks)}


def test_labels_round_trip_through_their_kind():
    assert sweep_label([0.25, 0.75]) == "sweep:0.25,0.75"
    assert sweep_label([1 / 3, 2 / 3]) == "sweep:0.333,0.667"  # 3 significant digits
    assert single_label("depth") == "single:depth"
    assert [label_kind(x) for x in ("cagrad:c=0.4", "sweep:0.5,0.5", "single:a")] == [
        "method",
        "sweep",
        "single",
    ]
    assert is_baseline("single:a") and is_baseline("sweep:0.5,0.5") and not is_baseline("ew")


def test_reference_run_prefers_ew_among_ok_runs():
    runs = [run("pcgrad"), run("ew", status="failed"), run("ew", seed=7)]
    assert reference_run(runs, TASKS)["seed"] == 7


def test_reference_run_without_ew_is_the_first_ok_run_that_trained_every_task():
    # A single-task baseline has no task pairs: it cannot stand for the problem's gradients.
    runs = [run("single:a", tasks=["a"]), run("mgda", status="failed"), run("pcgrad")]
    assert reference_run(runs, TASKS)["method"] == "pcgrad"


def test_reference_run_falls_back_to_a_run_cut_short():
    # A profile whose only run hit a NaN is still described (the steps done).
    runs = [run("single:a", tasks=["a"]), run("mgda", status="failed")]
    assert reference_run(runs, TASKS)["method"] == "mgda"
    assert reference_run([], TASKS) is None


def test_new_summary_has_every_required_key_and_no_run():
    s = new_summary("profile", "n", TASKS, ["l1"], "cpu", created="2026-01-01T00:00:00+00:00")
    assert list(s) == [
        "schema",
        "kind",
        "name",
        "created",
        "status",
        "tasks",
        "layers",
        "device",
        "runs",
        "diagnosis",
    ]
    assert s["schema"] == "mtldiag.summary/1" and s["status"] == "complete" and s["runs"] == []
