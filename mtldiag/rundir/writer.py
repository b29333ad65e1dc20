"""The run directory: spec and environment at start, CSV rows appended whole as training
runs, ``summary.json`` written atomically at the end. Format: ``docs/run-format.md``."""

from __future__ import annotations

import csv
import datetime as _dt
import io
import json
import os
import platform
import subprocess
import sys
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any, BinaryIO

import torch

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None  # type: ignore[assignment]

from mtldiag._version import __version__
from mtldiag.engine import distributed
from mtldiag.engine.gramian import StepMetrics
from mtldiag.errors import MtldiagError, RecordsError
from mtldiag.rundir.schema import Env, Summary, utc_now


def default_run_dir(name: str, root: str | Path = "runs") -> Path:
    """``<root>/<name>/<YYYYmmdd-HHMMSS>``: the name :meth:`RunWriter.open` starts from when
    no ``--out`` is given (it adds ``-2``, ``-3``... to take a name no one holds)."""
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path(root) / safe_name(name) / stamp


def safe_name(name: str) -> str:
    """A run name as one path component: no separator, and never ``.``, ``..`` or hidden."""
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
    return safe.lstrip(".") or "run"


def _take_fresh(base: Path) -> Path:
    """Create ``base`` (or ``base-2``, ``base-3``...) and return it. ``mkdir`` without
    ``exist_ok`` is atomic: of two processes picking one name at one instant, one gets it and
    the other the next name, so no two runs share a folder."""
    base.parent.mkdir(parents=True, exist_ok=True)
    for k in range(1, 10_000):
        path = base if k == 1 else base.with_name(f"{base.name}-{k}")
        try:
            path.mkdir()
            return path
        except FileExistsError:
            continue
    raise MtldiagError(f"no free run directory name next to '{base}'.", hint=_OUT_HINT)


_OUT_HINT = "choose another place with --out DIR"
_RECORDS = ("steps.csv", "pairs.csv", "summary.json")


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

    def __init__(self, path: str | Path, tasks: Sequence[str], fresh: bool = False) -> None:
        """``fresh``: ``path`` is a default name (:func:`default_run_dir`) that :meth:`open`
        may suffix to find a free one; otherwise it is the user's ``--out``, used as given."""
        self.path = Path(path)
        self.tasks = list(tasks)
        self.fresh = fresh
        self.enabled = distributed.is_main()
        self._steps: BinaryIO | None = None
        self._pairs: BinaryIO | None = None
        self._lock: int | None = None
        self._claimed = False
        self._made = False  # whether claim() created the folder (abandon() may remove it)

    def claim(self, resume: bool = False) -> Path:
        """Create (or take) the run directory and lock it for this process, writing nothing
        in it yet; return its final path. Refuses (exit 2) a folder that another process is
        writing, or that already holds a run unless ``resume`` (``compare --resume``
        continues one). :meth:`open` claims it when not done yet."""
        if not self.enabled or self._claimed:
            return self.path
        try:
            if self.fresh:
                self.path = _take_fresh(self.path)
                self._made = True
            else:
                self._made = not self.path.exists()
                self.path.mkdir(parents=True, exist_ok=True)
            self._lock = lock_directory(self.path)
            held = [f for f in _RECORDS if (self.path / f).exists()]
            if held and not resume:
                raise MtldiagError(
                    f"'{self.path}' already holds a run ({', '.join(held)}): writing into it "
                    "would mix two runs.",
                    hint="choose another --out, or delete that folder first",
                )
        except OSError as exc:
            self.abandon()
            raise MtldiagError(
                f"cannot write the run directory '{self.path}': {exc.strerror or exc}.",
                hint=_OUT_HINT,
            ) from exc
        except MtldiagError:
            self.abandon()
            raise
        self._claimed = True
        return self.path

    def abandon(self) -> None:
        """Give the folder back before anything was written (a tracker that cannot start):
        unlocked, and removed when this writer made it, locked it and it is still empty. (A
        writer refused the lock never removes it: the folder is the other process's.)"""
        held = self._lock is not None
        self.close()
        if held and self._made and self.path.is_dir() and not any(self.path.iterdir()):
            self.path.rmdir()
        self._claimed = False

    def open(
        self, spec_yaml: str, env: Env, keep: Collection[tuple[str, int]] | None = None
    ) -> None:
        """Claim the run directory (:meth:`claim`), write spec and environment, start the CSVs
        with their headers.

        ``keep``: continue this run directory (``compare --resume``): its spec and environment
        stay, the CSV rows of the ``(method, seed)`` runs in ``keep`` stay and every other row
        goes (atomically), new rows are appended.
        """
        if not self.enabled:
            return
        self.claim(resume=keep is not None)
        try:
            self._start_files(spec_yaml, env, keep)
        except OSError as exc:
            self.close()
            raise MtldiagError(
                f"cannot write the run directory '{self.path}': {exc.strerror or exc}.",
                hint=_OUT_HINT,
            ) from exc

    def _start_files(
        self, spec_yaml: str, env: Env, keep: Collection[tuple[str, int]] | None
    ) -> None:
        append = keep is not None
        if keep is not None:
            self._keep_rows({(str(m), str(seed)) for m, seed in keep})
        mode = "ab" if append else "wb"
        # Unbuffered: each row goes to the file in one write() of its own (see _append).
        self._steps = open(self.path / "steps.csv", mode, buffering=0)  # noqa: SIM115
        self._pairs = open(self.path / "pairs.csv", mode, buffering=0)  # noqa: SIM115
        if append:
            return
        (self.path / "spec.yaml").write_text(spec_yaml, encoding="utf-8")
        (self.path / "env.json").write_text(json.dumps(env, indent=2), encoding="utf-8")
        t = self.tasks
        self._append(
            self._steps,
            [
                ["method", "seed", "step", "instrumented", "time_ms", "peak_memory_mb"]
                + [f"loss/{x}" for x in t]
                + [f"grad_norm/{x}" for x in t]
                + [f"weight/{x}" for x in t]
                + ["lr"]
            ],
        )
        self._append(
            self._pairs, [["method", "seed", "step", "a", "b", "layer", "dot", "cosine", "gms"]]
        )

    def _append(self, file: BinaryIO | None, rows: list[list[Any]], at: str = "") -> None:
        """Append whole rows in one ``write``: a kill leaves no half row behind, and a full
        disk at most a torn last line, which the reader drops."""
        assert file is not None
        buf = io.StringIO()
        csv.writer(buf).writerows(rows)
        data = memoryview(buf.getvalue().encode("utf-8"))
        try:
            while data:
                data = data[file.write(data) or 0 :]
        except OSError as exc:
            raise RecordsError(
                f"cannot write the run's records in '{self.path}'{at}: "
                f"{exc.strerror or exc}; training stopped.",
                hint=f"free some space, then `mtldiag report {self.path}` rebuilds the summary "
                "from the rows written",
            ) from exc

    def _keep_rows(self, keys: set[tuple[str, str]]) -> None:
        for name in ("steps.csv", "pairs.csv"):
            path = self.path / name
            if not path.exists():
                continue
            with open(path, newline="", encoding="utf-8") as f:
                rows = list(csv.reader(f))
            tmp = path.with_suffix(".csv.tmp")
            with open(tmp, "w", newline="", encoding="utf-8") as f:
                kept = [r for r in rows[1:] if len(r) > 1 and (r[0], r[1]) in keys]
                csv.writer(f).writerows(rows[:1] + kept)
            os.replace(tmp, path)

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
        lr: float | None = None,
    ) -> None:
        """One steps.csv row (and the pairs.csv rows of an instrumented step), written whole.

        ``tasks`` names the tasks ``losses`` refer to when a run trains a subset of the
        directory's tasks (single-task baselines); the other columns stay empty. ``lr``: the
        learning rate the step was taken with (the first parameter group's).
        """
        if not self.enabled:
            return
        names = list(tasks) if tasks is not None else self.tasks
        idx = {name: i for i, name in enumerate(names)}

        def col(values: Sequence[float] | None) -> list[Any]:
            if values is None:
                return [""] * len(self.tasks)
            # None: a task without labels that step
            return [
                _fmt(values[idx[x]]) if x in idx and values[idx[x]] is not None else ""
                for x in self.tasks
            ]

        grad = metrics.grad_norm if metrics is not None else None
        self._append(
            self._steps,
            [
                [method, seed, step, int(metrics is not None), f"{time_ms:.4f}", f"{memory_mb:.1f}"]
                + col(losses)
                + col(grad)
                + col(weights)
                + ["" if lr is None else _fmt(lr)]
            ],
            f" ({method}, seed {seed}, step {step})",
        )
        if metrics is not None:
            rows = []
            for li, layer in enumerate(metrics.layers):
                for pi, (i, j) in enumerate(metrics.pairs):
                    if metrics.cosine[li][pi] is None:
                        continue  # a task of the pair had no labels this step
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
            self._append(self._pairs, rows, f" ({method}, seed {seed}, step {step})")

    def write_summary(self, summary: Summary) -> Path:
        """Write ``summary.json`` atomically (a reader never sees half a file)."""
        out = self.path / "summary.json"
        if not self.enabled:
            return out
        tmp = out.with_suffix(".json.tmp")
        try:
            tmp.write_text(json.dumps(summary, indent=2, allow_nan=False), encoding="utf-8")
            os.replace(tmp, out)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise RecordsError(
                f"cannot write '{out}': {exc.strerror or exc}.",
                hint=f"free some space, then `mtldiag report {self.path}` rebuilds it",
            ) from exc
        return out

    def close(self) -> None:
        for f in (self._steps, self._pairs):
            if f is not None and not f.closed:
                f.close()
        if self._lock is not None:
            os.close(self._lock)  # closing the descriptor releases the lock
            self._lock = None


def lock_directory(path: Path) -> int | None:
    """Lock ``path`` for this process (an advisory ``flock`` on the directory itself, so no
    lock file is left behind and a killed process's lock goes with it). Returns the descriptor
    to close; raises :class:`MtldiagError` when another process holds it."""
    if fcntl is None:  # Windows: no flock; the fresh-name pick still keeps runs apart
        return None
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise MtldiagError(
            f"'{path}' is being written by another mtldiag process.",
            hint="wait until it ends, or choose another --out",
        ) from None
    except OSError:  # a file system without flock (some NFS mounts): run unlocked
        os.close(fd)
        return None
    return fd


def _fmt(x: float) -> str:
    return repr(float(x))
