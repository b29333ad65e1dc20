"""MLflow: the resolved spec as params, metrics per step, the report and summary as artifacts.

The tracking store is MLflow's own choice: ``MLFLOW_TRACKING_URI`` (``sqlite:///mlflow.db``,
a server) or its embedded default. One MLflow run per (method, seed); a compare puts them
under one parent run that holds the comparison and the report.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from mtldiag.trackers.base import Sink, TrackerSetup, run_name, run_scalars, summary_text

_BATCH = 1000  # MLflow's limit of metrics per log_batch call
_PARAM_BATCH = 100  # ... and of params
_PARAM_CHARS = 500  # long values (a list of kwargs) are cut: a param is a label, not data
ARTIFACTS = ("report.html", "report.md", "summary.json", "spec.yaml")
# MLflow announces each new sqlite store on stderr ("Creating initial MLflow database
# tables...") in the middle of mtldiag's progress; its warnings and errors still show.
_CHATTY = ("mlflow.store.db.utils", "alembic.runtime.migration")


def _quiet_store_logs() -> None:
    """Raise MLflow's store-migration loggers to WARNING, unless the user set their level."""
    for name in _CHATTY:
        logger = logging.getLogger(name)
        if logger.level == logging.NOTSET:
            logger.setLevel(logging.WARNING)


class MlflowSink(Sink):
    """Writes through ``MlflowClient`` (no global active run, so a user's own run is left alone)."""

    name = "mlflow"
    package = "mlflow"
    extra = "mlflow"

    def __init__(self, setup: TrackerSetup) -> None:
        # Lazy: mlflow is an optional extra and a slow import, loaded only when chosen.
        from mlflow.entities import Metric, Param
        from mlflow.tracking import MlflowClient

        _quiet_store_logs()
        self._metric, self._param = Metric, Param
        self.client = MlflowClient()  # MLFLOW_TRACKING_URI, else MLflow's default store
        self.setup = setup
        self.experiment_id: str | None = None
        self.parent: str | None = None  # a compare's parent run
        self.run_id: str | None = None  # the (method, seed) run being trained
        self.last: str | None = None  # a profile's one run, kept open for the report
        self.open_runs: list[str] = []
        self._buffer: list[Any] = []

    def _experiment(self) -> str:
        exp = self.client.get_experiment_by_name(self.setup.experiment)
        if exp is not None:
            return exp.experiment_id
        return self.client.create_experiment(self.setup.experiment)

    def _create(self, name: str, params: Mapping[str, str], tags: dict[str, str]) -> str:
        assert self.experiment_id is not None
        run = self.client.create_run(self.experiment_id, run_name=name, tags=tags)
        run_id = run.info.run_id
        self.open_runs.append(run_id)
        items = [self._param(k[:250], str(v)[:_PARAM_CHARS]) for k, v in params.items()]
        for i in range(0, len(items), _PARAM_BATCH):
            self.client.log_batch(run_id, params=items[i : i + _PARAM_BATCH])
        return run_id

    def start_run(self, label: str, seed: int, tasks: Sequence[str]) -> None:
        if self.experiment_id is None:
            self.experiment_id = self._experiment()
        tags = {"mtldiag.kind": self.setup.kind, "mtldiag.run_dir": str(self.setup.run_dir)}
        if self.setup.kind == "compare" and self.parent is None:
            self.parent = self._create(self.setup.group, self.setup.params, tags)
        run_tags = {**tags, "mtldiag.method": label, "mtldiag.seed": str(seed)}
        if self.parent is not None:
            run_tags["mlflow.parentRunId"] = self.parent
        params = {**self.setup.params, "method": label, "seed": str(seed)}
        self.run_id = self._create(run_name(label, seed), params, run_tags)

    def log_step(self, scalars: Mapping[str, float], step: int) -> None:
        stamp = int(time.time() * 1000)
        self._buffer.extend(self._metric(k, v, stamp, step) for k, v in scalars.items())
        if len(self._buffer) >= _BATCH:
            self._flush()

    def _flush(self) -> None:
        if self.run_id is None:
            return
        while self._buffer:
            chunk, self._buffer = self._buffer[:_BATCH], self._buffer[_BATCH:]
            self.client.log_batch(self.run_id, metrics=chunk)

    def end_run(self, result: Mapping[str, Any]) -> None:
        self._flush()
        assert self.run_id is not None
        stamp, steps = int(time.time() * 1000), int(result.get("steps") or 0)
        finals = [self._metric(k, v, stamp, steps) for k, v in run_scalars(result).items()]
        for i in range(0, len(finals), _BATCH):
            self.client.log_batch(self.run_id, metrics=finals[i : i + _BATCH])
        self.client.set_tag(self.run_id, "mtldiag.status", str(result.get("status")))
        if self.parent is None:
            self.last = self.run_id  # a profile's run also gets the report: closed in finish
        else:
            self._terminate(self.run_id, result.get("status") == "ok")
        self.run_id = None

    def finish(self, summary: Mapping[str, Any], run_dir: Path) -> None:
        target = self.parent or self.last
        if target is None:
            return
        self.client.log_text(target, summary_text(summary), "diagnosis.txt")
        self.client.log_dict(
            target,
            {"diagnosis": summary.get("diagnosis"), "comparison": summary.get("comparison")},
            "diagnosis.json",
        )
        for name in ARTIFACTS:
            if (run_dir / name).is_file():
                self.client.log_artifact(target, str(run_dir / name))
        self._terminate(target, summary.get("status") == "complete")

    def _terminate(self, run_id: str, ok: bool) -> None:
        self.client.set_terminated(run_id, "FINISHED" if ok else "FAILED")
        self.open_runs.remove(run_id)

    def close(self) -> None:
        # Runs still open here were cut short (an error, Ctrl-C): mark them so in the UI.
        for run_id in list(self.open_runs):
            self._terminate(run_id, False)
