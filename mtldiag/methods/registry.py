"""The registry: every method class by name and alias, fresh instances, ``mtldiag methods`` rows."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mtldiag.errors import did_you_mean
from mtldiag.methods._aligned_mtl import AlignedMTL
from mtldiag.methods._cagrad import CAGrad
from mtldiag.methods._config import ConFIG
from mtldiag.methods._db_mtl import DBMTL
from mtldiag.methods._dualproj import DualProj
from mtldiag.methods._excess_mtl import ExcessMTL
from mtldiag.methods._fairgrad import FairGrad
from mtldiag.methods._gls import GeometricLoss
from mtldiag.methods._graddrop import GradDrop
from mtldiag.methods._gradnormalize import GradNormalize
from mtldiag.methods._gradvac import GradVac
from mtldiag.methods._imtl import IMTLG
from mtldiag.methods._learned import (
    FAMO,
    DynamicWeightAverage,
    GradNorm,
    RandomLossWeighting,
    Uncertainty,
)
from mtldiag.methods._m_config import MConFIG
from mtldiag.methods._mgda import MGDA
from mtldiag.methods._moco import MoCo
from mtldiag.methods._modo import MoDo
from mtldiag.methods._nash_mtl import NashMTL
from mtldiag.methods._pcgrad import PCGrad
from mtldiag.methods._rgw import RandomGradientWeighting
from mtldiag.methods._scalar import (
    Anneal,
    EqualWeights,
    FixedWeights,
    InitialLoss,
    PriorLoss,
    RealTimeLoss,
)
from mtldiag.methods._sdmgrad import SDMGrad
from mtldiag.methods._stch import SmoothTchebycheff
from mtldiag.methods._upgrad import UPGrad
from mtldiag.methods.base import (
    HyperParam,
    Method,
    MethodError,
    WeightingMethod,
)

# Listed in the order `mtldiag methods` shows them: loss weightings, then gradient methods.
METHODS: tuple[type[Method], ...] = (
    EqualWeights,
    FixedWeights,
    InitialLoss,
    PriorLoss,
    RealTimeLoss,
    Anneal,
    Uncertainty,
    GradNorm,
    DynamicWeightAverage,
    RandomLossWeighting,
    FAMO,
    GeometricLoss,
    SmoothTchebycheff,
    GradNormalize,
    PCGrad,
    MGDA,
    CAGrad,
    IMTLG,
    NashMTL,
    GradDrop,
    GradVac,
    AlignedMTL,
    UPGrad,
    DualProj,
    ConFIG,
    MConFIG,
    FairGrad,
    SDMGrad,
    MoDo,
    MoCo,
    DBMTL,
    ExcessMTL,
    RandomGradientWeighting,
)

_BY_NAME: dict[str, type[Method]] = {}
for _cls in METHODS:
    for _key in (_cls.name, *_cls.aliases):
        assert _key not in _BY_NAME, f"duplicate method name {_key}"
        _BY_NAME[_key] = _cls


def _key(name: str) -> str:
    return name.strip().lower().replace("-", "_")


def names() -> list[str]:
    """The canonical method names (aliases excluded), in display order."""
    return [cls.name for cls in METHODS]


def lookup(name: str) -> type[Method]:
    """The class registered under ``name`` or one of its aliases (case-insensitive)."""
    if not isinstance(name, str) or not name.strip():
        raise MethodError(f"a method name must be a non-empty string, not {name!r}.")
    cls = _BY_NAME.get(_key(name))
    if cls is None:
        hint = did_you_mean(_key(name), list(_BY_NAME))
        if hint:  # suggest the canonical name of the closest name or alias
            close = hint.split("'")[1]
            canonical = _BY_NAME[close].name
            hint = f" Did you mean '{canonical}'?"
        raise MethodError(
            f"Unknown method '{name}'.{hint} Valid methods: {', '.join(names())}.",
            hint="`mtldiag methods` lists them with their hyper-parameters",
        )
    return cls


def create(name: str, **hp: Any) -> Method:
    """A fresh instance of method ``name`` with hyper-parameters ``hp`` (validated)."""
    cls = lookup(name)
    allowed = [p.name for p in cls.params]
    for key in hp:
        if key not in allowed:
            valid = ", ".join(allowed) if allowed else "none"
            raise MethodError(
                f"Method '{cls.name}' has no hyper-parameter `{key}`."
                f"{did_you_mean(key, allowed)} Valid hyper-parameters: {valid}."
            )
    try:
        return cls(**hp)
    except MethodError:
        raise
    except (TypeError, ValueError) as exc:  # defensive: a constructor's own complaint
        raise MethodError(f"Method '{cls.name}': {exc}") from None


@dataclass(frozen=True)
class MethodInfo:
    """One row of ``mtldiag methods``."""

    name: str
    aliases: tuple[str, ...]
    family: str
    paper: str
    hyperparams: tuple[HyperParam, ...]
    stateful: bool
    cost: str
    summary: str


def describe() -> list[MethodInfo]:
    """Every method with its aliases, family, paper, hyper-parameters, state and cost."""
    rows = []
    for cls in METHODS:
        doc = (cls.__doc__ or "").strip().split("\n\n")[0]
        # The cost follows from the family (what the step core runs), not from a per-class note.
        if issubclass(cls, WeightingMethod):
            cost = "1 backward" + (
                " + T head passes for its norms (closed form on a Linear last layer,"
                " else T partial)"
                if cls.needs_grad_norms
                else ""
            )
        elif cls.tasks_per_step == 1:
            cost = "1 backward (one task's loss in turn, k = step mod T)"
        else:
            cost = "T backward (Jacobian)"
        stateful = bool(cls.stateful) if isinstance(cls.stateful, bool) else True
        rows.append(
            MethodInfo(
                cls.name,
                tuple(cls.aliases),
                cls.family,
                cls.paper,
                tuple(cls.params),
                stateful,
                cost,
                " ".join(doc.split()),
            )
        )
    return rows
