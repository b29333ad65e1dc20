"""Choosing trackers by name (``--log tensorboard,mlflow,wandb`` or the spec's ``log:``)."""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence

from mtldiag.engine import distributed
from mtldiag.errors import MtldiagError, did_you_mean
from mtldiag.trackers.base import Sink, TrackerSetup
from mtldiag.trackers.hub import Trackers
from mtldiag.trackers.mlflow import MlflowSink
from mtldiag.trackers.tensorboard import TensorBoardSink
from mtldiag.trackers.wandb import WandbSink

SINKS: dict[str, type[Sink]] = {
    "tensorboard": TensorBoardSink,
    "mlflow": MlflowSink,
    "wandb": WandbSink,
}


def parse_sink_names(value: str | Sequence[str] | None) -> tuple[str, ...]:
    """``"tensorboard,mlflow"`` or ``["mlflow"]`` as known sink names, in order, once each."""
    if value is None:
        return ()
    if not isinstance(value, str | list | tuple):
        raise MtldiagError(
            f"trackers must be a list of names, not {type(value).__name__}.",
            hint="for example log: [tensorboard, mlflow]",
        )
    parts = value.split(",") if isinstance(value, str) else [str(v) for v in value]
    names: list[str] = []
    for part in (p.strip().lower() for p in parts):
        if not part or part in names:
            continue
        if part not in SINKS:
            raise MtldiagError(
                f"unknown tracker '{part}'.{did_you_mean(part, tuple(SINKS))}",
                hint="choose from " + ", ".join(SINKS),
            )
        names.append(part)
    return tuple(names)


def require_packages(names: Sequence[str]) -> None:
    """Exit-2 error naming the install line when a chosen tracker's package is missing."""
    for name in names:
        sink = SINKS[name]
        if importlib.util.find_spec(sink.package) is None:
            raise MtldiagError(
                f"the {name} tracker needs the '{sink.package}' package, which is not installed.",
                hint=f"pip install 'mtldiag[{sink.extra}]'",
            )


def open_trackers(names: Sequence[str], setup: TrackerSetup) -> Trackers:
    """The sinks ``names`` ask for (none off rank 0 under torchrun: rank 0 alone records)."""
    names = parse_sink_names(list(names))
    require_packages(names)
    if not names or not distributed.is_main():
        return Trackers()
    return Trackers([SINKS[n](setup) for n in names])
