"""Balancing methods: every loss weighting and gradient-surgery method, behind one registry.

Example (runs as a test)::

    >>> import torch
    >>> from mtldiag import methods
    >>> from mtldiag.methods import RunContext
    >>> m = methods.create("mgda")
    >>> m.reset(RunContext(tasks=("a", "b")))
    >>> J = torch.tensor([[1.0, 0.0], [-1.0, 1.0]])
    >>> d = m.aggregate(J)             # sum convention: weights sum to T
    >>> bool((J @ d >= -1e-9).all())   # no task's loss goes up to first order
    True
    >>> methods.parse("cagrad:c=0.4,rescale=1")
    CAGrad(c=0.4, rescale=1, reduction='sum')

``create(name, **hp)`` returns a fresh instance every call (stateful methods keep their state
on it; the trainer calls ``reset(ctx)`` before each run). ``describe()`` feeds
``mtldiag methods``.
"""

from __future__ import annotations

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
    GradientMethod,
    GramianMethod,
    HyperParam,
    Method,
    MethodError,
    RunContext,
    TaskStats,
    WeightingMethod,
)
from mtldiag.methods.registry import METHODS, MethodInfo, create, describe, lookup, names
from mtldiag.methods.syntax import MethodSpec, parse, parse_method, parse_methods

__all__ = [
    "DBMTL",
    "FAMO",
    "IMTLG",
    "METHODS",
    "MGDA",
    "MConFIG",
    "AlignedMTL",
    "Anneal",
    "CAGrad",
    "ConFIG",
    "DualProj",
    "DynamicWeightAverage",
    "EqualWeights",
    "ExcessMTL",
    "FairGrad",
    "FixedWeights",
    "GeometricLoss",
    "GradDrop",
    "GradNorm",
    "GradNormalize",
    "GradVac",
    "GradientMethod",
    "GramianMethod",
    "HyperParam",
    "InitialLoss",
    "Method",
    "MethodError",
    "MethodInfo",
    "MethodSpec",
    "MoCo",
    "MoDo",
    "NashMTL",
    "PCGrad",
    "PriorLoss",
    "RandomGradientWeighting",
    "RandomLossWeighting",
    "RealTimeLoss",
    "RunContext",
    "SDMGrad",
    "SmoothTchebycheff",
    "TaskStats",
    "UPGrad",
    "Uncertainty",
    "WeightingMethod",
    "create",
    "describe",
    "lookup",
    "names",
    "parse",
    "parse_method",
    "parse_methods",
]
