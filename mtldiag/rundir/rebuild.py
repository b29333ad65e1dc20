"""Rebuild ``summary.json`` from the CSVs of a run that a crash or Ctrl-C cut short.

The CSV rows are replayed through :class:`mtldiag.rundir.accumulate.RunAccumulator`, the same
aggregation training uses, so a rebuilt run entry has the same numbers a finished one would
have had for the steps done. Compare runs are evaluated on the training-loss tail (the eval
function and the validation loader are the user's code and are not re-run).
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from mtldiag.engine.gramian import ALL_LAYERS, StepMetrics, pair_indices
from mtldiag.engine.representation import REPRESENTATION_LAYER
from mtldiag.rundir.accumulate import RunAccumulator
from mtldiag.rundir.load import RunData
from mtldiag.rundir.schema import RunEntry, Summary, new_summary, summary_space
from mtldiag.rundir.summary import conclude_compare, describe


def _layers(pairs: pd.DataFrame | None) -> list[str]:
    """Shared layers in the order training wrote them (input side first)."""
    if pairs is None or pairs.empty:
        return []
    return [x for x in dict.fromkeys(pairs["layer"]) if x != ALL_LAYERS]


def _run_tasks(rows: pd.DataFrame, tasks: list[str]) -> list[str]:
    """The tasks a run trained: single-task baselines leave the other loss columns empty."""
    return [t for t in tasks if rows[f"loss/{t}"].notna().any()] or tasks


def _vector(row: dict[str, Any], prefix: str, tasks: list[str]) -> list[float] | None:
    """The ``<prefix>/<t>`` cells of a row, or ``None`` when any is empty."""
    out = [row[f"{prefix}/{t}"] for t in tasks]
    if any(v is None or (isinstance(v, float) and math.isnan(v)) for v in out):
        return None
    return [float(v) for v in out]


def _step_metrics(
    step_pairs: pd.DataFrame, norms: list[float], tasks: list[str], layers: list[str]
) -> StepMetrics | None:
    """The :class:`StepMetrics` of one instrumented step from its pairs.csv rows."""
    pairs = pair_indices(len(tasks))
    all_layers = [ALL_LAYERS, *layers]
    cos = [[0.0] * len(pairs) for _ in all_layers]
    gms = [[1.0] * len(pairs) for _ in all_layers]
    dot = [[0.0] * len(pairs) for _ in all_layers]
    if pairs:
        index = {(tasks[i], tasks[j]): k for k, (i, j) in enumerate(pairs)}
        li_of = {name: li for li, name in enumerate(all_layers)}
        seen = 0
        for a, b, layer, d, c, g in zip(
            step_pairs["a"],
            step_pairs["b"],
            step_pairs["layer"],
            step_pairs["dot"],
            step_pairs["cosine"],
            step_pairs["gms"],
            strict=True,
        ):
            k, li = index.get((a, b)), li_of.get(layer)
            if k is None or li is None:
                continue
            dot[li][k], cos[li][k], gms[li][k] = float(d), float(c), float(g)
            seen += 1
        if seen == 0:  # pairs.csv lost this step: count it as not instrumented
            return None
    return StepMetrics(
        layers=all_layers,
        pairs=pairs,
        grad_norm=norms,
        layer_norms=[],
        dot=dot,
        cosine=cos,
        gms=gms,
    )


def _expected_steps(data: RunData, kind: str) -> int | None:
    """The step count asked for: ``--steps``/``-n`` in env.json's argv, else the spec's."""
    argv = [str(a) for a in (data.env or {}).get("argv") or []]
    # Only the mtldiag command line counts (a library call records its host's argv).
    cmd = next((i for i, a in enumerate(argv[:3]) if a in ("profile", "compare")), None)
    argv = argv[cmd + 1 :] if cmd is not None else []
    for i, arg in enumerate(argv):
        if arg in ("--steps", "-n") and i + 1 < len(argv):
            try:
                return int(argv[i + 1])
            except ValueError:
                return None
        if isinstance(arg, str) and arg.startswith("--steps="):
            try:
                return int(arg.split("=", 1)[1])
            except ValueError:
                return None
    spec = data.spec or {}
    section = spec.get(kind) if isinstance(spec.get(kind), dict) else {}
    steps = section.get("steps") if section else None
    if steps is None and isinstance(spec.get("profile"), dict):
        steps = spec["profile"].get("steps")
    return int(steps) if isinstance(steps, int) else None


def _kind(data: RunData, labels: list[tuple[str, int]]) -> str:
    argv = [str(a) for a in (data.env or {}).get("argv") or []][:3]
    if "compare" in argv:
        return "compare"
    if "profile" in argv:
        return "profile"
    return "compare" if len(labels) > 1 else "profile"


def replay_run(
    rows: pd.DataFrame,
    pairs: pd.DataFrame | None,
    method: str,
    seed: int,
    tasks: list[str],
    layers: list[str],
) -> RunEntry:
    """One run's ``summary.json`` entry from its steps.csv rows (and pairs.csv rows)."""
    run_tasks = _run_tasks(rows, tasks)
    acc = RunAccumulator(method, seed, run_tasks, [ALL_LAYERS, *layers])
    by_step: dict[int, pd.DataFrame] = {}
    if pairs is not None and not pairs.empty:
        by_step = {int(s): g for s, g in pairs.groupby("step", sort=False)}
    empty = pd.DataFrame(columns=["a", "b", "layer", "dot", "cosine", "gms"])
    for row in rows.to_dict("records"):
        losses: list[float | None] = [float(row[f"loss/{t}"]) for t in run_tasks]
        if not math.isnan(row.get("lr", math.nan)):
            # A step that trained has its lr; there an empty loss cell is a task without
            # labels (missing:). The row of a non-finite loss has none (older runs: no column).
            losses = [None if math.isnan(v) else v for v in losses]  # type: ignore[arg-type]
        weights = _vector(row, "weight", run_tasks)
        metrics = None
        if int(row["instrumented"]) == 1:
            norms = _vector(row, "grad_norm", run_tasks)
            if norms is not None:
                metrics = _step_metrics(
                    by_step.get(int(row["step"]), empty), norms, run_tasks, layers
                )
        acc.add(losses, float(row["time_ms"]), float(row["peak_memory_mb"]), weights, metrics)
        bad = [
            t
            for t, v in zip(run_tasks, losses, strict=True)
            if v is not None and not math.isfinite(v)
        ]
        if bad:
            acc.fail(
                "failed",
                f"{method} (seed {seed}): loss of task '{bad[0]}' is "
                f"{losses[run_tasks.index(bad[0])]} at step {int(row['step'])}.",
            )
            break
    out = acc.result()
    out["jacobian"] = _space(method, layers)
    return out


def _space(method: str, layers: list[str]) -> str:
    """A rebuilt run's gradient space: its label's ``@`` suffix, else its layers (the one
    pseudo-layer ``representation``; a lone parameter layer of that very name reads as it)."""
    for space in ("parameters", "representation"):
        if method.endswith(f"@{space}"):
            return space
    return "representation" if layers == [REPRESENTATION_LAYER] else "parameters"


def _mark_cut(runs: list[RunEntry], expected: int | None) -> None:
    """Mark the last run interrupted when it stopped short of the steps asked for.

    Runs are written one after another, so only the last one can have been cut. Without a
    known step count it is compared with the runs before it; a lone run is then assumed cut
    (no summary.json means the process never reached its end).
    """
    last = runs[-1]
    if last["status"] != "ok":
        return
    others = [r["steps"] for r in runs[:-1]]
    target = expected if expected is not None else (max(others) if others else None)
    if target is None or last["steps"] < target:
        last["status"] = "interrupted"
        last["error"] = (
            f"stopped after {last['steps']} steps; rebuilt from steps.csv "
            "(no summary.json was written)"
        )


# What a comparison records as asked (summary["compare"]); spec.yaml holds them resolved.
_ASKED = ("methods", "seeds", "steps", "every", "single_task", "sweep")


def _compare_record(data: RunData, runs: list[RunEntry]) -> dict[str, Any] | None:
    """``summary["compare"]`` of a rebuilt comparison, which ``--resume`` reads: the one of the
    summary being replaced (``--rebuild``), else the options spec.yaml recorded at the start,
    the space of runs without an ``@`` suffix from their rows, the spec's path unknown."""
    old = (data.summary or {}).get("compare")
    if isinstance(old, dict):
        return dict(old)
    section = (data.spec or {}).get("compare")
    if not isinstance(section, dict) or any(k not in section for k in _ASKED):
        return None
    plain = [
        r["jacobian"] for r in runs if not r["method"].endswith(("@parameters", "@representation"))
    ]
    return {
        **{k: section[k] for k in _ASKED},
        "wrt": plain[0] if plain else "parameters",
        "spec_path": None,
    }


def rebuild_summary(data: RunData, why: str = "summary.json was missing") -> Summary:
    """A ``summary.json`` (status ``interrupted``) rebuilt from the run directory's CSVs.

    ``why`` goes into its ``rebuilt`` entry (``--rebuild`` rebuilds a summary that exists).
    """
    steps = data.steps
    assert steps is not None and not steps.empty
    tasks = data.tasks
    layers = _layers(data.pairs)
    groups = list(dict.fromkeys(zip(steps["method"], steps["seed"], strict=True)))
    kind = _kind(data, groups)
    expected = _expected_steps(data, kind)
    pair_groups: dict[tuple[str, int], pd.DataFrame] = {}
    if data.pairs is not None and not data.pairs.empty:
        pair_groups = {
            (str(m), int(s)): g for (m, s), g in data.pairs.groupby(["method", "seed"], sort=False)
        }
    runs: list[RunEntry] = []
    for method, seed in groups:
        rows = steps[(steps["method"] == method) & (steps["seed"] == seed)]
        pairs = pair_groups.get((method, int(seed)))
        # Each run's own layers: a comparison may hold runs of both gradient spaces.
        own = _layers(pairs) or layers
        runs.append(replay_run(rows, pairs, method, int(seed), tasks, own))
    _mark_cut(runs, expected)
    spec = data.spec or {}
    env = data.env or {}
    summary = new_summary(
        kind,
        str(spec.get("name") or data.path.name),
        tasks,
        layers,
        str(env.get("device", "unknown")),
        created=env.get("created"),
    )
    summary["status"] = "interrupted"
    summary["runs"] = runs
    summary["jacobian"] = summary_space([str(r["jacobian"]) for r in runs])
    summary["rebuilt"] = f"from steps.csv and pairs.csv by `mtldiag report` ({why})"
    if kind == "compare":
        record = _compare_record(data, runs)
        if record is not None:
            summary["compare"] = record  # type: ignore[typeddict-item]
        # The eval function and data.val are the user's code, not re-run: the loss tail it is.
        for run in runs:
            if run["status"] == "ok":
                run["metrics"] = dict(run["final_loss"])
        conclude_compare(summary, "interrupted", "train_loss_tail", dict.fromkeys(tasks, False))
    else:
        describe(summary)
    return summary
