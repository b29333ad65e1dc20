"""TensorBoard: one ``SummaryWriter`` per (method, seed) under ``<run dir>/tensorboard/``."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from mtldiag.trackers.base import Sink, TrackerSetup, safe_name, summary_text


def run_folder(label: str, seed: int) -> str:
    """``pcgrad-seed0``: one TensorBoard run per (method, seed), named so it sorts and reads."""
    return f"{safe_name(label).replace(' ', '_')}-seed{seed}"


class TensorBoardSink(Sink):
    """Scalars per step; the diagnosis and the summary as text in the ``summary`` run.

    ``tensorboard --logdir <run dir>/tensorboard`` shows every method and seed side by side.
    TensorBoard has no artifacts: report.html stays in the run directory.
    """

    name = "tensorboard"
    package = "tensorboard"
    extra = "tensorboard"

    def __init__(self, setup: TrackerSetup) -> None:
        # Lazy: tensorboard is an optional extra, imported only when this sink is chosen.
        from torch.utils.tensorboard import SummaryWriter

        self._writer_cls = SummaryWriter
        self.root = Path(setup.run_dir) / "tensorboard"
        self.params = setup.params
        self.writer: Any = None

    def start_run(self, label: str, seed: int, tasks: Sequence[str]) -> None:
        self.writer = self._writer_cls(log_dir=str(self.root / run_folder(label, seed)))
        self.writer.add_text("spec", _as_code(json.dumps(self.params, indent=1)), 0)

    def log_step(self, scalars: Mapping[str, float], step: int) -> None:
        for key, value in scalars.items():
            self.writer.add_scalar(key, value, step)

    def end_run(self, result: Mapping[str, Any]) -> None:
        self.writer.add_text("status", f"{result.get('status')} {result.get('error') or ''}")
        self.writer.close()
        self.writer = None

    def finish(self, summary: Mapping[str, Any], run_dir: Path) -> None:
        writer = self._writer_cls(log_dir=str(self.root / "summary"))
        try:
            writer.add_text("diagnosis", _as_code(summary_text(summary)))
            writer.add_text("summary.json", _as_code(json.dumps(summary, indent=1, default=str)))
        finally:
            writer.close()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


def _as_code(text: str) -> str:
    # TensorBoard renders text as Markdown: indented lines keep their layout.
    return "\n".join("    " + line for line in text.splitlines())
