"""``validate_spec``: imports, a forward on the first batches, the losses, shared parameters,
the representation module its runs would take."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from mtldiag.engine.device import resolve_device
from mtldiag.engine.representation import choose_representation
from mtldiag.errors import UserCodeError
from mtldiag.runs.build import BatchCycle, build_optimizer
from mtldiag.runs.profile import create_method
from mtldiag.runs.train import Prepared, compute_losses, prepare
from mtldiag.spec import Spec, load_spec

# Batches `validate` forwards: enough to meet a loader that fails after its first batch.
VALIDATE_BATCHES = 4


def validate_spec(
    spec: Spec | str | Path | None = None, device: str | None = None
) -> dict[str, Any]:
    """Build everything the spec names and run one forward; raise on the first problem."""
    spec = spec if isinstance(spec, Spec) else load_spec(spec)
    dev = resolve_device(device or spec.device)
    for ms in (spec.profile.method, *spec.compare.methods):
        create_method(ms)  # a method name or hyper-parameter the runs would refuse
    prep = prepare(spec, spec.seed, dev)
    for ms in (spec.profile.method, *spec.compare.methods):
        # z's module, as a run of that method takes it: its @ suffix, else representation:
        choose_representation(prep.model, prep.selection.layout.names, spec.representation, ms.wrt)
    build_optimizer(spec, prep.model)
    _read_batches(prep)
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


def _read_batches(prep: Prepared) -> None:
    """Forward the first batches: a loader that breaks after one batch, or a loss that is
    already infinite, fails here rather than minutes into a run."""
    batches = BatchCycle(prep.loader, prep.seed)
    for i in range(VALIDATE_BATCHES):
        batch = next(batches)
        if batches.epoch > 0:  # a loader shorter than that: every batch was read
            break
        losses = compute_losses(
            prep.loss_fn, prep.model, batch, prep.tasks, prep.device, prep.spec.precision
        )
        for task, loss in losses.items():
            value = float(loss.detach())
            if not math.isfinite(value):
                raise UserCodeError(
                    f"loss of task '{task}' is {value} on batch {i} of the data loader.",
                    hint="check that task's targets and loss (and the model's output scale)",
                )
        del losses
    prep.model.zero_grad(set_to_none=True)
