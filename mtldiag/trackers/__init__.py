"""Tracker sinks: the records of ``steps.csv``/``pairs.csv`` sent to TensorBoard, MLflow or
W&B under one key scheme (:mod:`mtldiag.trackers.base`).

``step_scalars`` turns one :class:`~mtldiag.engine.probe.ProbeStep` into that flat dict for any
other logger; ``open_trackers`` builds the sinks a command asks for.
"""

from __future__ import annotations

from mtldiag.trackers.base import PAIR_SEP, ConflictCounter, Sink, TrackerSetup, step_scalars
from mtldiag.trackers.factory import SINKS, open_trackers, parse_sink_names
from mtldiag.trackers.hub import Trackers, TrackerWarning

__all__ = [
    "PAIR_SEP",
    "SINKS",
    "ConflictCounter",
    "Sink",
    "TrackerSetup",
    "TrackerWarning",
    "Trackers",
    "open_trackers",
    "parse_sink_names",
    "step_scalars",
]
