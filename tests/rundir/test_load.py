"""`rundir.load`: the only reader of a run directory, on hand-written files."""

from __future__ import annotations

import json

import pytest

from mtldiag.errors import MtldiagError
from mtldiag.rundir.load import SummaryError, load_run, read_pairs, read_steps, read_summary
from mtldiag.rundir.schema import new_summary

HEADER = "method,seed,step,instrumented,time_ms,peak_memory_mb,loss/NA,loss/b,grad_norm/NA,"
HEADER += "grad_norm/b,weight/NA,weight/b\n"


def test_a_torn_last_line_is_dropped(tmp_path):
    path = tmp_path / "steps.csv"
    path.write_text(HEADER + "ew,0,0,1,2.5,10.0,1.0,2.0,0.5,0.25,1.0,1.0\new,0,1,0,2.")
    steps = read_steps(path)
    assert len(steps) == 1 and steps.iloc[0]["loss/b"] == 2.0


def test_task_and_method_names_stay_text(tmp_path):
    path = tmp_path / "steps.csv"
    path.write_text(HEADER + "nan,0,0,0,1.0,1.0,3.0,4.0,,,,\n")
    steps = read_steps(path)
    assert steps.iloc[0]["method"] == "nan" and steps.iloc[0]["loss/NA"] == 3.0
    pairs = tmp_path / "pairs.csv"
    pairs.write_text("method,seed,step,a,b,layer,dot,cosine,gms\nNA,0,0,NA,b,*,1.0,-0.5,0.8\n")
    row = read_pairs(pairs).iloc[0]
    assert (row["method"], row["a"], row["cosine"]) == ("NA", "NA", -0.5)


def test_read_summary_says_what_is_wrong(tmp_path):
    with pytest.raises(SummaryError) as exc:
        read_summary(tmp_path / "nowhere")
    assert exc.value.reason == "missing"
    with pytest.raises(SummaryError) as exc:
        read_summary(tmp_path)
    assert exc.value.reason == "no_file"
    (tmp_path / "summary.json").write_text("{not json")
    with pytest.raises(SummaryError) as exc:
        read_summary(tmp_path)
    assert exc.value.reason == "invalid_json" and exc.value.file == tmp_path / "summary.json"
    (tmp_path / "summary.json").write_text('{"runs": []}')
    with pytest.raises(SummaryError) as exc:
        read_summary(tmp_path / "summary.json")
    assert exc.value.reason == "not_a_summary"


def test_read_summary_returns_the_file(tmp_path):
    data = dict(new_summary("profile", "synth", ["a", "b"], ["encoder"], "cpu"))
    (tmp_path / "summary.json").write_text(json.dumps(data))
    assert read_summary(tmp_path) == data


@pytest.mark.parametrize(
    ("change", "where"),
    [
        ({"runs": 5}, "'runs': must be a list, not int"),
        ({"tasks": "ab"}, "'tasks': must be a list"),
        ({"status": "fine"}, "'status': must be one of"),
        ({"runs": [{"method": "ew", "seed": "0"}]}, "'runs[0].seed': must be a whole number"),
        ({"name": None}, "'name': must be text, not null"),
    ],
)
def test_read_summary_names_the_key_of_a_wrong_type(tmp_path, change, where):
    data = {**new_summary("profile", "synth", ["a", "b"], ["encoder"], "cpu"), **change}
    (tmp_path / "summary.json").write_text(json.dumps(data))
    with pytest.raises(SummaryError, match="wrong_types") as info:
        read_summary(tmp_path)
    assert where in info.value.detail


def test_load_run_reads_what_is_there_and_refuses_an_empty_folder(tmp_path):
    with pytest.raises(MtldiagError, match="not a usable"):
        load_run(tmp_path)
    (tmp_path / "steps.csv").write_text(HEADER + "ew,0,0,0,1.0,1.0,3.0,4.0,,,,\n")
    (tmp_path / "summary.json").write_text("{torn")  # unreadable: the report rebuilds it
    data = load_run(tmp_path)
    assert data.summary is None and data.pairs is None and data.env is None
    assert data.tasks == ["NA", "b"]  # from the steps.csv header without a summary
