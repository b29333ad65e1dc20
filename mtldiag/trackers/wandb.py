"""Weights & Biases: one W&B run per (method, seed), grouped by the profile or compare.

Offline unless a key is there: with neither ``WANDB_API_KEY`` nor ``WANDB_MODE`` set, runs are
written to ``<run dir>/wandb/`` (``wandb sync`` uploads them later); ``WANDB_MODE=online``
uses the key from ``wandb login``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from mtldiag.trackers.base import (
    Sink,
    TrackerSetup,
    run_name,
    run_scalars,
    safe_name,
    summary_text,
)

ARTIFACTS = ("report.html", "report.md", "summary.json")


def wandb_mode() -> str | None:
    """``"offline"`` when no key and no mode is set, else ``None`` (W&B's own choice)."""
    if os.environ.get("WANDB_MODE") or os.environ.get("WANDB_API_KEY"):
        return None
    return "offline"


class WandbSink(Sink):
    """Metrics per step, run summary numbers, the report as an artifact."""

    name = "wandb"
    package = "wandb"
    extra = "wandb"

    def __init__(self, setup: TrackerSetup) -> None:
        # Lazy: wandb is an optional extra, imported only when this sink is chosen.
        import wandb

        self.wandb = wandb
        self.setup = setup
        self.run: Any = None
        self.last: Any = None  # a profile's one run, kept open for the report

    def _init(self, name: str, job_type: str, config: Mapping[str, Any]) -> Any:
        return self.wandb.init(
            project=self.setup.experiment,
            group=self.setup.group,
            name=name,
            job_type=job_type,
            config=dict(config),
            dir=str(self.setup.run_dir),
            mode=wandb_mode(),
            reinit="create_new",
            # The library never prints: no console capture, no banner, no system sampling.
            settings=self.wandb.Settings(
                console="off", silent=True, x_disable_stats=True, x_save_requirements=False
            ),
        )

    def start_run(self, label: str, seed: int, tasks: Sequence[str]) -> None:
        config = {**self.setup.params, "method": label, "seed": seed}
        self.run = self._init(run_name(label, seed), "train", config)

    def log_step(self, scalars: Mapping[str, float], step: int) -> None:
        self.run.log(dict(scalars), step=step)

    def end_run(self, result: Mapping[str, Any]) -> None:
        self.run.summary.update(run_scalars(result))
        self.run.summary["status"] = str(result.get("status"))
        if self.setup.kind == "compare":
            self.run.finish(exit_code=0 if result.get("status") == "ok" else 1)
        else:
            self.last = self.run
        self.run = None

    def finish(self, summary: Mapping[str, Any], run_dir: Path) -> None:
        run = self.last or self._init("comparison", "summary", self.setup.params)
        self.last = None
        run.summary["diagnosis"] = summary_text(summary)
        verdict = (summary.get("comparison") or {}).get("verdict")
        if verdict:
            run.summary["verdict"] = verdict
        artifact = self.wandb.Artifact(
            safe_name(f"{self.setup.group}-report").replace(" ", "_"), type="report"
        )
        for name in ARTIFACTS:
            if (run_dir / name).is_file():
                artifact.add_file(str(run_dir / name))
        run.log_artifact(artifact)
        run.finish(exit_code=0 if summary.get("status") == "complete" else 1)

    def close(self) -> None:
        for run in (self.run, self.last):
            if run is not None:
                run.finish(exit_code=1)
        self.run = self.last = None
