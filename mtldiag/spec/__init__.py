"""The YAML spec: typed dataclasses (:mod:`~mtldiag.spec.model`), read and validated by
:mod:`~mtldiag.spec.parse`, with the value checks and messages of :mod:`~mtldiag.spec.values`."""

from mtldiag.methods.syntax import MethodSpec, parse_method, parse_methods
from mtldiag.spec.model import (
    BUILTIN_LOSSES,
    DEFAULT_SPEC,
    DEVICES,
    PRECISIONS,
    CompareSpec,
    FactorySpec,
    OptimizerSpec,
    ProfileSpec,
    SchedulerSpec,
    Spec,
    TaskSpec,
    TrainSpec,
)
from mtldiag.spec.parse import load_spec, parse_spec, spec_to_yaml

__all__ = [
    "BUILTIN_LOSSES",
    "DEFAULT_SPEC",
    "DEVICES",
    "PRECISIONS",
    "CompareSpec",
    "FactorySpec",
    "OptimizerSpec",
    "MethodSpec",
    "ProfileSpec",
    "SchedulerSpec",
    "Spec",
    "TaskSpec",
    "TrainSpec",
    "load_spec",
    "parse_method",
    "parse_methods",
    "parse_spec",
    "spec_to_yaml",
]
