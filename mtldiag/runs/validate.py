"""``validate_spec``: imports, one forward on one batch, every task's loss, shared parameters."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mtldiag.engine.device import resolve_device
from mtldiag.runs.train import prepare
from mtldiag.spec import Spec, load_spec


def validate_spec(
    spec: Spec | str | Path | None = None, device: str | None = None
) -> dict[str, Any]:
    """Build everything the spec names and run one forward; raise on the first problem."""
    spec = spec if isinstance(spec, Spec) else load_spec(spec)
    dev = resolve_device(device or spec.device)
    prep = prepare(spec, spec.seed, dev)
    layout = prep.selection.layout
    layers = []
    for layer, sl in layout.layer_slices.items():
        names = [
            n
            for n in layout.names
            if n.rpartition(".")[0] == layer or (layer == "<root>" and "." not in n)
        ]
        tasks = sorted(
            {t for n in names for t in prep.selection.reached_by.get(n, ())}, key=prep.tasks.index
        )
        layers.append({"layer": layer, "numel": sl.stop - sl.start, "tasks": tasks})
    return {
        "device": str(dev),
        "losses": prep.first_losses,
        "layers": layers,
        "shared_numel": layout.numel,
        "other_numel": sum(p.numel() for p in prep.selection.others),
        "other_parameters": list(prep.selection.other_names),
    }
