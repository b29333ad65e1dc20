"""Registry: names, fresh instances, parsing, and one-sentence errors."""

from __future__ import annotations

import pytest
import torch

from mtldiag import methods
from mtldiag.errors import MtldiagError
from mtldiag.methods import MethodError, RunContext, TaskStats


def test_every_method_is_listed_with_paper_and_defaults():
    rows = {r.name: r for r in methods.describe()}
    expected = {
        "ew",
        "fixed",
        "init_loss",
        "prior_loss",
        "realtime",
        "uncertainty",
        "gradnorm",
        "pcgrad",
        "mgda",
        "anneal",
        "gradnormalize",
        "dwa",
        "rlw",
        "cagrad",
        "imtl",
        "nash_mtl",
        "graddrop",
        "gradvac",
        "aligned_mtl",
        "upgrad",
        "famo",
        # issue 16
        "gls",
        "stch",
        "dualproj",
        "config",
        "fairgrad",
        "sdmgrad",
        "modo",
        "moco",
        "db_mtl",
        "excess_mtl",
        "rgw",
        # M-ConFIG (issue 16's left-out variant)
        "m_config",
    }
    assert set(rows) == expected and len(rows) == 33
    assert all(r.paper for r in rows.values())
    assert {h.name: h.default for h in rows["cagrad"].hyperparams}["c"] == 0.4
    assert {h.name: h.default for h in rows["gradnorm"].hyperparams}["alpha"] == 1.5
    assert {h.name: h.default for h in rows["gradvac"].hyperparams}["beta"] == 0.01
    assert {h.name: h.default for h in rows["famo"].hyperparams} == {
        "w_lr": 0.025,
        "gamma": 1e-3,
        "min_losses": 0.0,
    }
    assert rows["pcgrad"].stateful and not rows["mgda"].stateful
    assert rows["gradnorm"].cost.startswith("1 backward +")
    assert rows["m_config"].cost.startswith("1 backward (one task's loss")
    assert rows["config"].cost == "T backward (Jacobian)"


def test_create_returns_fresh_instances_and_aliases_resolve():
    a, b = methods.create("uw"), methods.create("uncertainty")
    assert type(a) is type(b) and a is not b
    assert methods.create("equal").name == "ew"
    assert methods.create("IMTL-G").name == "imtl"


def test_unknown_name_lists_valid_and_suggests_closest():
    with pytest.raises(MethodError) as info:
        methods.create("pcgard")
    msg = str(info.value)
    assert "Unknown method 'pcgard'" in msg and "Did you mean 'pcgrad'?" in msg
    assert "mgda" in msg and "famo" in msg
    assert isinstance(info.value, MtldiagError) and info.value.exit_code == 2


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("cagrad:c=-1", "Parameter `c` should be a non-negative float. Found `c = -1`."),
        (
            "cagrad:rescale=3",
            "Parameter `rescale` should be one of 0 | 1 | 2. Found `rescale = 3`.",
        ),
        ("mgda:normalization=l3", "Did you mean 'l2'?"),
        ("gradvac:beta=2", "Parameter `beta` should be a float in [0, 1]. Found `beta = 2`."),
        ("nash_mtl:update_weights_every=0", "should be a positive integer"),
        ("cagrad:alpha=0.4", "Method 'cagrad' has no hyper-parameter `alpha`."),
        ("dwa:temp=abc", "Found `temp = 'abc'`"),
    ],
)
def test_bad_hyperparameters_name_value_and_allowed(text, fragment):
    with pytest.raises(MethodError) as info:
        methods.parse(text)
    assert fragment in str(info.value)


def test_parse_reads_yaml_scalars_and_flow_mappings():
    m = methods.parse("cagrad:c=0.5,rescale=2,reduction=mean")
    assert (m.c, m.rescale, m.reduction) == (0.5, 2, "mean")
    f = methods.parse("fixed:weights={a: 1, b: 0.5}")
    f.reset(RunContext(tasks=("a", "b")))
    assert f.weights(torch.ones(2), 0).tolist() == [1.0, 0.5]
    assert repr(methods.parse("pcgrad")) == "PCGrad(reduction='sum')"


def test_fixed_weights_must_match_the_run_tasks():
    m = methods.create("fixed", weights={"seg": 1.0, "dpth": 2.0})
    with pytest.raises(MethodError) as info:
        m.reset(RunContext(tasks=("seg", "depth")))
    msg = str(info.value)
    assert msg.startswith(
        "fixed: `weights` names unknown task 'dpth' (did you mean 'depth'?) "
        "and has no entry for task 'depth'; the run's tasks are 'seg', 'depth'."
    )


def test_prior_loss_without_statistics_is_a_clear_error():
    with pytest.raises(MethodError, match="task 'b' has none"):
        methods.create("prior_loss").reset(
            RunContext(tasks=("a", "b"), task_stats={"a": TaskStats(prior_loss=1.0)})
        )
    m = methods.create("prior_loss")
    m.reset(
        RunContext(
            tasks=("a", "b"),
            task_stats={"a": TaskStats(prior_loss=2.0), "b": TaskStats(prior_loss=0.5)},
        )
    )
    assert m.weights(torch.ones(2), 0).tolist() == [0.5, 2.0]


def test_anneal_rejects_unknown_task_and_bad_schedule():
    with pytest.raises(MethodError, match="unknown task"):
        methods.create("anneal", schedules={"x": {"from": 0, "to": 1}}).reset(
            RunContext(tasks=("a",))
        )
    with pytest.raises(MethodError, match="schedules.a.end"):
        methods.create("anneal", schedules={"a": {"start": 10, "end": 5}})


def test_package_docstring_example_runs():
    import doctest

    import mtldiag.methods as pkg

    result = doctest.testmod(pkg, raise_on_error=False, verbose=False)
    assert result.attempted >= 5 and result.failed == 0


def test_docs_and_readme_list_every_method():
    import re
    from pathlib import Path

    root = Path(__file__).parents[2]
    docs = (root / "docs" / "methods.md").read_text(encoding="utf-8")
    table = set(re.findall(r"^\| `(\w+)` \|", docs, flags=re.M))
    assert table == set(methods.names())
    readme = (root / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Balancing methods", 1)[1].split("\n## ", 1)[0]
    rows = [
        ln
        for ln in section.splitlines()
        if ln.startswith("| loss weighting") or ln.startswith("| gradient")
    ]
    listed = set(re.findall(r"`(\w+)`", " ".join(rows)))
    assert set(methods.names()) <= listed
