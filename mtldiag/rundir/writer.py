"""The run directory: spec and environment at start, CSV rows appended and flushed as training
runs, ``summary.json`` written atomically at the end. Format: ``docs/run-format.md``."""

from __future__ import annotations

import csv
import datetime as _dt
import json
import os
import platform
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

import torch

from mtldiag._version import __version__
from mtldiag.engine import distributed
from mtldiag.engine.gramian import StepMetrics
from mtldiag.errors import MtldiagError
from mtldiag.rundir.schema import Env, Summary, utc_now


def default_run_dir(name: str, root: str | Path = "runs") -> Path:
    """``<root>/<name>/<YYYYmmdd-HHMMSS>``, suffixed ``-2``, ``-3``... when it exists."""
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    base = Path(root) / _safe(name) / stamp
    path, k = base, 1
    while path.exists():
        k += 1
        path = base.with_name(f"{stamp}-{k}")
    return path


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name) or "run"


def _git_sha() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=False
        )
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def environment(device: torch.device) -> Env:
    """``env.json``: versions, device, threads, git sha and command line of this process."""
    env: Env = {
        "mtldiag": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "platform": platform.platform(),
        "device": str(device),
        "threads": torch.get_num_threads(),
        "git_sha": _git_sha(),
        "argv": sys.argv,
        "created": utc_now(),
    }
    dctx = distributed.context()
    if dctx is not None:
        env["world_size"] = dctx.world_size
        env["backend"] = dctx.backend
    if device.type == "cuda":
        env["cuda"] = torch.version.cuda
        env["gpu"] = torch.cuda.get_device_name(device)
    return env


class RunWriter:
    """Writes one run directory. Created lazily: nothing is on disk before :meth:`open`.

    Under torchrun only rank 0 writes; on the other ranks (``enabled`` False) every method
    does nothing.
    """

    def __init__(self, path: str | Path, tasks: Sequence[str]) -> None:
        self.path = Path(path)
        self.tasks = list(tasks)
        self.enabled = distributed.is_main()
        self._steps: IO[str] | None = None
        self._pairs: IO[str] | None = None
        self._steps_csv: Any = None
        self._pairs_csv: Any = None

    def open(self, spec_yaml: str, env: Env) -> None:
        if not self.enabled:
            return
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            probe = self.path / ".write-test"
            probe.write_text("")
            probe.unlink()
        except OSError as exc:
            raise MtldiagError(
                f"cannot write the run directory '{self.path}': {exc.strerror or exc}.",
                hint="choose another place with --out DIR",
            ) from exc
        (self.path / "spec.yaml").write_text(spec_yaml, encoding="utf-8")
        (self.path / "env.json").write_text(json.dumps(env, indent=2), encoding="utf-8")
        self._steps = open(self.path / "steps.csv", "w", newline="", encoding="utf-8")  # noqa: SIM115
        self._pairs = open(self.path / "pairs.csv", "w", newline="", encoding="utf-8")  # noqa: SIM115
        self._steps_csv = csv.writer(self._steps)
        self._pairs_csv = csv.writer(self._pairs)
        t = self.tasks
        self._steps_csv.writerow(
            ["method", "seed", "step", "instrumented", "time_ms", "peak_memory_mb"]
            + [f"loss/{x}" for x in t]
            + [f"grad_norm/{x}" for x in t]
            + [f"weight/{x}" for x in t]
        )
        self._pairs_csv.writerow(
            ["method", "seed", "step", "a", "b", "layer", "dot", "cosine", "gms"]
        )
        self._steps.flush()
        self._pairs.flush()

    def write_step(
        self,
        method: str,
        seed: int,
        step: int,
        time_ms: float,
        memory_mb: float,
        losses: Sequence[float],
        weights: Sequence[float] | None,
        metrics: StepMetrics | None,
        tasks: Sequence[str] | None = None,
    ) -> None:
        """One steps.csv row (and the pairs.csv rows of an instrumented step), flushed.

        ``tasks`` names the tasks ``losses`` refer to when a run trains a subset of the
        directory's tasks (single-task baselines); the other columns stay empty.
        """
        if not self.enabled:
            return
        assert self._steps_csv is not None and self._pairs_csv is not None
        names = list(tasks) if tasks is not None else self.tasks
        idx = {name: i for i, name in enumerate(names)}

        def col(values: Sequence[float] | None) -> list[Any]:
            if values is None:
                return [""] * len(self.tasks)
            return [_fmt(values[idx[x]]) if x in idx else "" for x in self.tasks]

        grad = metrics.grad_norm if metrics is not None else None
        self._steps_csv.writerow(
            [method, seed, step, int(metrics is not None), f"{time_ms:.4f}", f"{memory_mb:.1f}"]
            + col(losses)
            + col(grad)
            + col(weights)
        )
        if metrics is not None:
            rows = []
            for li, layer in enumerate(metrics.layers):
                for pi, (i, j) in enumerate(metrics.pairs):
                    rows.append(
                        [
                            method,
                            seed,
                            step,
                            names[i],
                            names[j],
                            layer,
                            _fmt(metrics.dot[li][pi]),
                            _fmt(metrics.cosine[li][pi]),
                            _fmt(metrics.gms[li][pi]),
                        ]
                    )
            self._pairs_csv.writerows(rows)
            assert self._pairs is not None
            self._pairs.flush()
        assert self._steps is not None
        self._steps.flush()

    def write_summary(self, summary: Summary) -> Path:
        """Write ``summary.json`` atomically (a reader never sees half a file)."""
        out = self.path / "summary.json"
        if not self.enabled:
            return out
        tmp = out.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(summary, indent=2, allow_nan=False), encoding="utf-8")
        os.replace(tmp, out)
        return out

    def close(self) -> None:
        for f in (self._steps, self._pairs):
            if f is not None and not f.closed:
                f.close()


def _fmt(x: float) -> str:
    return repr(float(x))
