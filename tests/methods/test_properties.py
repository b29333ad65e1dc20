"""TorchJD's property suite over mtldiag's methods: each property for the methods whose paper
makes it hold, on TorchJD's kinds of inputs, in float64 and float32 (see ``_properties``)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mtldiag import methods
from mtldiag.methods import RunContext
from tests.methods._properties import (
    CASES,
    check_linear_under_scaling,
    check_non_conflicting,
    check_permutation_invariant,
    check_strongly_stationary,
    check_structure,
)

DTYPES = [torch.float64, torch.float32]
GRADIENT = [c.name for c in methods.METHODS if c.family == "gradient"]


def aggregator(spec: str):
    """A fresh method per call (state never leaks between inputs), the run's dtype set."""
    ms = methods.parse_method(spec)

    def agg(j: torch.Tensor) -> torch.Tensor:
        m = methods.create(ms.name, **ms.hparams)
        t = j.shape[0]
        m.reset(RunContext(tasks=tuple(f"t{i}" for i in range(t)), seed=0, dtype=j.dtype))
        return m.aggregate(j, torch.ones(t, dtype=j.dtype))

    return agg


def _run(check, spec, cases, dtype, **kw):
    agg = aggregator(spec)
    failed = []
    for case in cases:
        try:
            check(agg, case.tensor(dtype), **kw)
        except AssertionError as exc:
            failed.append(f"{case.name}: {str(exc)[:120]}")
    assert not failed, "\n".join(failed)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", GRADIENT)
def test_expected_structure(name, dtype):
    _run(check_structure, name, CASES["scaled"] + CASES["typical"], dtype)


# Non-conflicting by construction: MGDA (min-norm point of the hull), UPGrad and DualProj
# (projections onto the dual cone), CAGrad when c >= 1 (Liu et al., Prop. 1 / TorchJD).
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("spec", ["mgda", "upgrad", "dualproj", "cagrad:c=1", "cagrad:c=2"])
def test_non_conflicting(spec, dtype):
    _run(check_non_conflicting, spec, CASES["typical"] + CASES["scaled"], dtype)


def _full_row_rank(cases):
    return [c for c in cases if np.linalg.matrix_rank(c.matrix) == c.matrix.shape[0]]


# ConFIG: u_iᵀx = 1 for every task when the unit gradients are independent (paper, eq. 2).
# FairGrad / Nash-MTL: g_iᵀd = w_i^(-1/α) > 0 wherever G w = w^(-1/α) has a solution, i.e.
# when no non-negative combination of gradients vanishes (not weakly stationary).
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    ("spec", "kinds"),
    [
        ("config", ["normal"]),
        ("fairgrad", ["normal", "nonweak"]),
        ("fairgrad:alpha=2", ["normal", "nonweak"]),
        ("nash_mtl:max_norm=0", ["normal", "nonweak"]),
    ],
)
def test_non_conflicting_where_the_paper_guarantees_it(spec, kinds, dtype):
    cases = [c for k in kinds for c in CASES[k]]
    if "config" in spec:
        cases = _full_row_rank(cases)
    else:
        cases = [c for c in cases if c.name.startswith("nonweak") or c in _full_row_rank(cases)]
    _run(check_non_conflicting, spec, cases, dtype)


ORDER_FREE = [
    "mgda",
    "cagrad",
    "imtl",
    "aligned_mtl",
    "upgrad",
    "nash_mtl",
    "gradnormalize",
    "dualproj",
    "config",
    "fairgrad",
    "sdmgrad",
    "modo",
    "moco",
    "db_mtl",
    "excess_mtl",
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", ORDER_FREE)
def test_permutation_invariant(name, dtype):
    cases, kw = CASES["typical"], {}
    if name in ("nash_mtl", "fairgrad"):
        # Where G w = w^(-1/α) has a solution (not weakly stationary); elsewhere the step
        # keeps its fallback weights. Newton stops at a 1e-8..1e-10 residual: rtol 1e-6.
        cases = _full_row_rank(CASES["normal"]) + CASES["nonweak"]
        kw = {"rtol": 1e-6 if dtype == torch.float64 else 1e-4}
    elif name == "cagrad" and dtype == torch.float32:
        # At a Pareto-stationary J (strong / weak) the dual's g_w = 0 is only found to
        # float32 rounding, and for c < 1 the direction jumps there.
        cases = [c for c in cases if not c.name.startswith(("strong", "weak"))]
    _run(check_permutation_invariant, name, cases, dtype, **kw)


# Linear under positive row scaling: UPGrad (Quinton & Rey 2024, Prop. 3), ConFIG
# (the unit gradients do not change; the projection length is linear).
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", ["upgrad", "config"])
def test_linear_under_scaling(name, dtype):
    cases = CASES["typical"]
    if dtype == torch.float32:
        # At a strictly weakly stationary J the dual cone has an empty interior and the
        # projection jumps with J: float32 rounding (an eigenvalue of 7e-8 instead of 0)
        # decides which side the answer falls on. TorchJD's 6e-2 tolerance absorbs it.
        cases = [c for c in cases if not c.name.startswith("weak")]
    _run(check_linear_under_scaling, name, cases, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", ["upgrad", "dualproj"])
def test_strongly_stationary(name, dtype):
    _run(check_strongly_stationary, name, CASES["non_strong"], dtype)


def test_the_inputs_have_the_stationarity_they_claim():
    # The samplers' promises, checked by an LP-free argument: strong cases have a positive
    # null left vector; non-weak ones a positive left singular vector.
    for c in CASES["strong"]:
        u, s, _ = np.linalg.svd(c.matrix)
        null = u[:, int((s > 1e-9).sum()) :]
        assert null.shape[1] >= 1
    for c in CASES["nonweak"]:
        u, s, _ = np.linalg.svd(c.matrix)
        assert any(np.all(u[:, k] > 0) or np.all(u[:, k] < 0) for k in range(len(s)))
