"""M-ConFIG: the update against ``conflictfree``'s PseudoMomentumOperator, its parameters, and
how ``mtldiag methods`` / ``mtldiag compare`` show and run it (the step path: tests/engine/
test_alternating.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from mtldiag import methods
from mtldiag.cli import app
from mtldiag.methods import MethodError, RunContext

runner = CliRunner()
SAMPLE = Path(__file__).parents[2] / "sample_configs" / "synthetic.yaml"


def make(t: int, **hp) -> methods.MConFIG:
    m = methods.create("m_config", **hp)
    m.reset(RunContext(tasks=tuple(f"t{i}" for i in range(t)), dtype=torch.float64))
    return m


def reference(t: int, calls, **kw) -> list[torch.Tensor]:
    """conflictfree's directions for ``calls`` [(indexes, grads)], in float64.

    The package makes its state and EqualWeight's weights with torch's default dtype, and
    its least-squares solve refuses mixed dtypes: float64 needs the default set to it.
    """
    from conflictfree.grad_operator import ConFIGOperator
    from conflictfree.momentum_operator import PseudoMomentumOperator

    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        op = PseudoMomentumOperator(t, gradient_operator=ConFIGOperator(), **kw)
        return [op.calculate_gradient(i, g).double() for i, g in calls]
    finally:
        torch.set_default_dtype(old)


def grads(t: int, p: int, steps: int, seed: int) -> torch.Tensor:
    return torch.randn(
        steps, t, p, dtype=torch.float64, generator=torch.Generator().manual_seed(seed)
    )


# T = 3 takes the package's least-squares ConFIG, T = 2 its closed form (allow_simplified_model
# is on by default): mtldiag's `config` rule (T x T pseudo-inverse, reduction=sum, the
# package's ProjectionLength) gives both; no option needs changing to match.
@pytest.mark.parametrize(("t", "seed"), [(3, 0), (3, 1), (2, 2)])
def test_directions_match_conflictfree_pseudo_momentum_operator(t, seed):
    g = grads(t, 20, 12, seed)
    ref = reference(t, [(s % t, g[s, s % t]) for s in range(12)])
    m = make(t)
    for s in range(12):
        k = m.task_of_step(s)
        assert k == s % t
        d = m.task_direction(k, g[s, k])
        assert d.dtype == torch.float64 and d.shape == (20,)
        assert torch.allclose(d, ref[s], rtol=1e-10, atol=1e-10), (s, (d - ref[s]).abs().max())
    # The first T - 1 steps give 0 (not every task seen yet), then the update starts.
    assert all(float(r.norm()) == 0.0 for r in ref[: t - 1]) and float(ref[t - 1].norm()) > 0


def test_betas_are_passed_through_like_the_package():
    g = grads(3, 20, 12, 3)
    ref = reference(3, [(s % 3, g[s, s % 3]) for s in range(12)], beta_1=0.5, beta_2=0.9)
    m = make(3, beta_1=0.5, beta_2=0.9)
    out = [m.task_direction(s % 3, g[s, s % 3]) for s in range(12)]
    assert max(float((a - b).abs().max()) for a, b in zip(out, ref, strict=True)) < 1e-10


def test_aggregate_updates_every_momentum_like_the_package_with_all_indexes():
    g = grads(3, 20, 5, 4)
    ref = reference(3, [([0, 1, 2], list(g[s])) for s in range(5)])
    m = make(3)
    for s in range(5):
        assert torch.allclose(m.aggregate(g[s]), ref[s], rtol=1e-10, atol=1e-10)


def test_reset_forgets_the_momenta():
    g = grads(2, 6, 4, 5)
    m = make(2)
    first = [m.task_direction(s % 2, g[s, s % 2]) for s in range(4)]
    m.reset(RunContext(tasks=("a", "b"), dtype=torch.float64))
    again = [m.task_direction(s % 2, g[s, s % 2]) for s in range(4)]
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))


def test_parse_aliases_and_bad_betas():
    assert methods.parse("mconfig").name == methods.parse("momentum-config").name == "m_config"
    m = methods.parse("m_config:beta_1=0.5,beta_2=0.99")
    assert (m.beta_1, m.beta_2) == (0.5, 0.99)
    assert repr(m) == "MConFIG(beta_1=0.5, beta_2=0.99)"
    with pytest.raises(MethodError) as info:
        methods.parse("m_config:beta_1=1")
    assert str(info.value) == (
        "Parameter `beta_1` should be a float in [0, 1). Found `beta_1 = 1`."
    )
    with pytest.raises(MethodError, match="Method 'm_config' has no hyper-parameter `reduction`"):
        methods.parse("m_config:reduction=mean")


def test_methods_lists_it_with_one_backward_per_step():
    row = {r.name: r for r in methods.describe()}["m_config"]
    assert row.family == "gradient" and row.stateful
    assert {h.name: h.default for h in row.hyperparams} == {"beta_1": 0.9, "beta_2": 0.999}
    res = runner.invoke(app, ["methods", "--family", "gradient"], env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    line = next(ln for ln in res.output.splitlines() if ln.startswith("m_config"))
    assert "1 backward (one task's loss in turn, k = step mod T) per step" in line
    assert "mconfig, momentum_config" in res.output


def test_compare_runs_it_end_to_end(tmp_path: Path):
    out = tmp_path / "cmp"
    res = runner.invoke(
        app,
        [
            "compare",
            str(SAMPLE),
            "--methods",
            "ew,m_config",
            "--steps",
            "8",
            "--device",
            "cpu",
            "--out",
            str(out),
        ],
    )
    assert res.exit_code == 0, res.output
    runs = json.loads((out / "summary.json").read_text())["runs"]
    mc = [r for r in runs if r["method"] == "m_config"]
    assert len(mc) == 2 and all(r["status"] == "ok" and r["steps"] == 8 for r in mc), mc
    # Instrumented steps still measure every pair of the 3 tasks.
    assert all(r["instrumented_steps"] >= 1 and len(r["pairs"]) == 3 for r in mc)
