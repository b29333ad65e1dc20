"""``run_compare``: identical starting weights and data order across compared runs, failed
runs that do not stop the others, the three evaluations, and bad input found before training."""

import copy
import csv
from pathlib import Path

import pytest
import torch

from mtldiag.errors import Interrupted, MtldiagError, UserCodeError
from mtldiag.runs.build import BatchCycle
from mtldiag.runs.compare import run_compare
from mtldiag.runs.plan import plan_runs
from mtldiag.runs.train import prepare
from mtldiag.spec import MethodSpec, parse_spec

from ..conftest import SYNTHETIC


def _params(model):
    return [p.detach().clone() for p in model.parameters()]


def test_runs_with_one_seed_start_from_same_weights_and_see_same_batches():
    spec = parse_spec(SYNTHETIC)
    dev = torch.device("cpu")
    first = prepare(spec, 3, dev)
    torch.rand(1000)  # a method (or dropout) drawing from the global RNG in between
    second = prepare(spec, 3, dev, shared=first.selection)
    for p, q in zip(_params(first.model), _params(second.model), strict=True):
        assert torch.equal(p, q)
    a, b = BatchCycle(first.loader, 3), BatchCycle(second.loader, 3)
    for _ in range(10):  # beyond one epoch of 4 batches: reshuffled identically
        xa, _ = next(a)
        torch.rand(10)
        xb, _ = next(b)
        assert torch.equal(xa, xb)
    other = prepare(spec, 4, dev)
    assert not all(
        torch.equal(p, q) for p, q in zip(_params(first.model), _params(other.model), strict=True)
    )


def test_plan_covers_methods_seeds_sweeps_and_single_task_runs():
    plan = plan_runs(
        [MethodSpec("ew"), MethodSpec("cagrad", {"c": 0.4})],
        [0, 1],
        ["a", "b"],
        single_task=True,
        sweep_weights=[[0.25, 0.75]],
    )
    labels = [(r.label, r.seed) for r in plan]
    assert labels[:5] == [
        ("ew", 0),
        ("cagrad:c=0.4", 0),
        ("sweep:0.25,0.75", 0),
        ("single:a", 0),
        ("single:b", 0),
    ]
    assert len(plan) == 10
    sweep = plan[2].method
    # the label shows the simplex point; the run uses the sum convention (x T = 2), like ew
    assert sweep.name == "fixed" and sweep.hparams == {"weights": {"a": 0.5, "b": 1.5}}
    assert plan[3].tasks == ("a",)


def test_same_method_under_two_labels_trains_identically_within_a_seed(tmp_path: Path):
    """End to end through run_compare: ``ew`` and ``fixed`` weights of 1 are the same method,
    so with the same initial weights and the same batches in the same order their whole loss
    curves agree, even with ``rlw`` (random weights from the global RNG) run in between."""
    data = copy.deepcopy(SYNTHETIC)
    data["data"]["kwargs"]["noise"] = 0.3  # batches differ, so their order matters
    run_compare(
        parse_spec(data),
        methods="ew,rlw,fixed:weights={a: 1, b: 1, c: 1}",
        seeds=[0, 1],
        steps=6,
        every=3,
        out=tmp_path / "run",
    )
    with open(tmp_path / "run" / "steps.csv") as f:
        rows = list(csv.DictReader(f))
    curves: dict[tuple[str, str], list[str]] = {}
    for r in rows:
        curves.setdefault((r["method"][:5], r["seed"]), []).append(r["loss/b"])
    for seed in "01":
        assert curves[("ew", seed)] == curves[("fixed", seed)]
        assert curves[("rlw", seed)] != curves[("ew", seed)]
    assert curves[("ew", "0")] != curves[("ew", "1")]  # another seed, another order


EXPLODE = "fixed:weights={a: 1000000, b: 1, c: 1}"  # SGD with a 1e6 weight: inf in 2-3 steps


def test_a_diverging_method_is_marked_failed_and_the_others_go_on(tmp_path: Path):
    res = run_compare(
        parse_spec(SYNTHETIC),
        methods=f"{EXPLODE},ew",
        seeds=[0],
        steps=8,
        every=4,
        out=tmp_path / "run",
    )
    runs = {r["method"]: r for r in res.summary["runs"]}
    bad = next(r for label, r in runs.items() if label.startswith("fixed"))
    assert bad["status"] == "failed" and bad.get("metrics") is None
    assert "task 'a'" in bad["error"] and "at step" in bad["error"]
    assert 1 <= bad["steps"] < 8  # the steps before it are kept
    assert runs["ew"]["status"] == "ok" and runs["ew"]["steps"] == 8  # ran after the failure
    cmp = res.summary["comparison"]
    assert [f["seed"] for f in cmp["failed_runs"]] == [0]
    assert "task 'a'" in cmp["failed_runs"][0]["error"]
    assert [(r["label"], r["rank"]) for r in cmp["rows"]] == [("ew", 1), (bad["method"], None)]
    assert "Failed:" in cmp["verdict"]


def _with(**changes):
    data = copy.deepcopy(SYNTHETIC)
    data.update(changes)
    return data


def test_eval_function_and_higher_is_better_reach_the_table(tmp_path: Path):
    ev = tmp_path / "myeval.py"
    ev.write_text(
        "import torch\n"
        "def evaluate(model, loader):\n"
        "    x, y = next(iter(loader))\n"
        "    out = model(x)\n"
        "    return {t: -float(((out[t] - y[t]) ** 2).mean()) for t in 'abc'}\n"
    )
    data = _with(eval=f"{ev}:evaluate")
    data["tasks"] = {
        t: {"output": t, "target": t, "loss": "mse", "higher_is_better": True} for t in "abc"
    }
    res = run_compare(
        parse_spec(data),
        methods="ew,pcgrad",
        seeds=[0],
        steps=4,
        every=2,
        single_task=True,
        out=tmp_path / "run",
    )
    cmp = res.summary["comparison"]
    assert cmp["evaluation"] == "eval_fn" and cmp["reference"] == "single_task"
    assert cmp["higher_is_better"] == {"a": True, "b": True, "c": True}
    assert all(r["metric"]["a"]["mean"] < 0 for r in cmp["rows"])  # the eval's values, kept
    assert "eval function" in cmp["verdict"]


def test_eval_function_returning_the_wrong_tasks_fails_its_run_with_the_reason(tmp_path: Path):
    ev = tmp_path / "badeval.py"
    ev.write_text("def evaluate(model, loader):\n    return {'a': 1.0, 'z': 2.0}\n")
    res = run_compare(
        parse_spec(_with(eval=f"{ev}:evaluate")),
        methods="ew",
        seeds=[0],
        steps=2,
        out=tmp_path / "run",
    )
    (run,) = res.summary["runs"]
    assert run["status"] == "failed" and "metrics" not in run
    assert run["error"].startswith("ew (seed 0) in evaluation after step 2: ")
    assert "must return {task: value} for a, b, c; it returned: a, z" in run["error"]


def test_validation_loader_raising_fails_the_run_naming_the_users_frame(tmp_path: Path):
    (tmp_path / "badval.py").write_text(
        "def build(**kw):\n    return Broken()\n\n\n"
        "class Broken:\n    def __iter__(self):\n        raise OSError('val shard gone')\n"
    )
    data = copy.deepcopy(SYNTHETIC)
    data["data"]["val"] = {"factory": f"{tmp_path / 'badval.py'}:build"}
    res = run_compare(parse_spec(data), methods="ew", seeds=[0], steps=2, out=tmp_path / "run")
    (run,) = res.summary["runs"]
    assert run["status"] == "failed" and run["steps"] == 2
    assert "the validation loader (data.val" in run["error"] and "val shard gone" in run["error"]
    assert "badval.py:7 in __iter__" in run["error"]


def test_eval_that_cannot_be_imported_is_refused_before_any_training(tmp_path: Path):
    with pytest.raises(UserCodeError, match="nope.py"):
        run_compare(
            parse_spec(_with(eval=f"{tmp_path / 'nope.py'}:evaluate")),
            methods="ew",
            seeds=[0],
            steps=2,
            out=tmp_path / "run",
        )
    assert not (tmp_path / "run").exists()


def test_validation_loader_is_used_when_given(tmp_path: Path):
    data = copy.deepcopy(SYNTHETIC)
    data["data"]["val"] = {
        "factory": data["data"]["factory"],
        "kwargs": {**data["data"]["kwargs"], "seed": 7, "n_batches": 2},
    }
    res = run_compare(
        parse_spec(data), methods="ew", seeds=[0], steps=2, every=1, out=tmp_path / "run"
    )
    run = res.summary["runs"][0]
    assert res.summary["comparison"]["evaluation"] == "val_loss"
    assert run["metrics"] != run["final_loss"]  # other batches than the training tail


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"methods": "ew,pcgard"}, "Did you mean 'pcgrad'?"),
        ({"methods": "ew,ew"}, "listed more than once"),
        ({"methods": "fixed:weights={a: 1, z: 2}"}, "unknown task 'z'"),  # found by reset()
        ({"methods": "cagrad:c=-3"}, "`c` should be a non-negative float"),
        ({"seeds": []}, "--seeds is empty"),
        ({"seeds": [1, 1]}, "repeats a seed"),
        ({"steps": 0}, "'--steps': must be a whole number from 1 to"),
        ({"every": -1}, "'--every': must be a whole number from 0 to"),  # as compare.every
        ({"seeds": [0, 2**40]}, "'--seeds': must be a whole number from 0 to 4294967295"),
        ({"sweep": -1}, "'--sweep': must be a whole number from 0 to 1000, not -1"),
        ({"sweep": 10**9}, "'--sweep': must be a whole number from 0 to 1000,"),
    ],
)
def test_bad_input_is_refused_before_any_training(tmp_path: Path, kwargs, message):
    args = {"methods": "ew", "seeds": [0], "steps": 2, **kwargs}
    with pytest.raises(MtldiagError, match=message) as info:
        run_compare(parse_spec(SYNTHETIC), out=tmp_path / "run", **args)
    assert info.value.exit_code == 2
    assert not (tmp_path / "run" / "steps.csv").exists()  # nothing trained, nothing written


@pytest.mark.parametrize(
    ("spec", "kwargs", "same"),
    [
        ({}, {"methods": "ew,mgda,mgda@parameters"}, "mgda and mgda@parameters"),
        ({}, {"methods": "mgda@representation,mgda", "wrt": "representation"}, "mgda@repr"),
        ({"representation": "encoder"}, {"methods": "mgda,mgda@representation"}, "mgda and"),
        ({}, {"methods": "uw,uncertainty"}, "uw and uncertainty"),  # an alias
        ({}, {"methods": "cagrad:c=0.3,cagrad:c=0.3@parameters"}, "cagrad:c=0.3 and"),
        ({}, {"methods": "cagrad,cagrad:c=0.4"}, "cagrad and cagrad:c=0.4"),  # the default
        ({}, {"methods": "mgda:normalization=none,mgda"}, "mgda:normalization=none and"),
    ],
)
def test_two_names_of_one_run_are_refused_as_listed_twice(tmp_path: Path, spec, kwargs, same):
    # Same method, hyper-parameters and gradient space: the same run (it trained twice).
    with pytest.raises(MtldiagError, match="the same run") as info:
        run_compare(
            parse_spec({**SYNTHETIC, **spec}), seeds=[0], steps=2, out=tmp_path / "r", **kwargs
        )
    assert same in info.value.message and info.value.exit_code == 2
    assert not (tmp_path / "r").exists()


def test_another_value_of_a_hyper_parameter_is_another_run():
    from mtldiag.runs.plan import compare_options

    opts = compare_options(parse_spec(SYNTHETIC), methods="cagrad,cagrad:c=0.5", seeds=[0])
    assert [m.label for m in opts.methods] == ["cagrad", "cagrad:c=0.5"]


def test_one_method_in_both_spaces_is_two_runs(tmp_path: Path):
    res = run_compare(
        parse_spec(SYNTHETIC),
        methods="mgda@representation,mgda@parameters",
        wrt="representation",
        seeds=[0],
        steps=2,
        out=tmp_path / "r",
    )
    assert [r["method"] for r in res.summary["runs"]] == ["mgda@representation", "mgda@parameters"]


def test_methods_and_hyper_parameters_come_from_the_spec(tmp_path: Path):
    data = _with(
        compare={
            "methods": ["ew", {"cagrad": {"c": 0.2}}],
            "seeds": [3],
            "steps": 2,
            "hyperparams": {"pcgrad": {"reduction": "mean"}},
        }
    )
    res = run_compare(parse_spec(data), out=tmp_path / "a")
    assert [(r["method"], r["seed"], r["steps"]) for r in res.summary["runs"]] == [
        ("ew", 3, 2),
        ("cagrad:c=0.2", 3, 2),
    ]
    # compare.hyperparams apply to a method named on the command line too
    res = run_compare(parse_spec(data), methods="pcgrad", out=tmp_path / "b")
    assert res.summary["runs"][0]["method"] == "pcgrad:reduction=mean"


def test_a_method_that_raises_fails_its_run_alone(tmp_path: Path, monkeypatch):
    from mtldiag.methods._pcgrad import PCGrad

    calls = {"n": 0}
    original = PCGrad.weights_from_gramian

    def breaks_at_third_call(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("solver blew up")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(PCGrad, "weights_from_gramian", breaks_at_third_call)
    res = run_compare(
        parse_spec(SYNTHETIC),
        methods="pcgrad,ew",
        seeds=[0],
        steps=6,
        every=1,
        out=tmp_path / "run",
    )
    runs = {r["method"]: r for r in res.summary["runs"]}
    assert runs["pcgrad"]["status"] == "failed"
    assert "RuntimeError at step 2: solver blew up" in runs["pcgrad"]["error"]
    assert runs["pcgrad"]["steps"] == 3  # steps 0, 1 and the failing one are recorded
    assert runs["ew"]["status"] == "ok" and runs["ew"]["steps"] == 6


class _CtrlCInSecondRun:
    """Ctrl-C at the second step of the second run (as the trainer's observer sees it)."""

    runs = 0

    def run_started(self, label: str, seed: int, steps: int) -> None:
        self.runs += 1

    def step_done(self, step: int, losses: dict[str, float]) -> None:
        if self.runs == 2 and step == 1:
            raise KeyboardInterrupt

    def run_finished(self, result: dict) -> None:
        pass


def test_ctrl_c_counts_only_the_finished_runs_as_kept(tmp_path: Path):
    with pytest.raises(Interrupted) as info:
        run_compare(
            parse_spec(SYNTHETIC),
            methods="ew,pcgrad,mgda",
            seeds=[0],
            steps=4,
            out=tmp_path / "r",
            observer=_CtrlCInSecondRun(),
        )
    # was "2 run(s) are kept": the cut run is recorded as interrupted, and --resume reruns it
    assert "1 run(s) are kept" in info.value.message


def test_resume_after_a_rebuild_does_not_mix_the_tail_loss_with_validation_metrics(
    tmp_path: Path,
):
    from mtldiag.report.build import build_report
    from mtldiag.runs.resume import resume_compare

    data = copy.deepcopy(SYNTHETIC)
    data["data"]["val"] = {
        "factory": data["data"]["factory"],
        "kwargs": {**data["data"]["kwargs"], "seed": 7, "n_batches": 2},
    }
    out = tmp_path / "run"
    full = run_compare(parse_spec(data), methods="ew,pcgrad", seeds=[0], steps=3, out=out)
    (out / "summary.json").unlink()
    # A rebuild cannot rerun data.val: its metrics are the training loss's tail.
    assert build_report(out).summary["evaluation"] == "train_loss_tail"
    res = resume_compare(out)
    # Every run trained again and was evaluated on data.val, as the full comparison was.
    assert res.summary["evaluation"] == "val_loss"
    assert [r["metrics"] for r in res.summary["runs"]] == [
        r["metrics"] for r in full.summary["runs"]
    ]
