"""``run_profile``: instrumented training on the user's model, written to a run directory."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

import torch

from mtldiag import methods
from mtldiag.analysis.preview import PreviewAccumulator
from mtldiag.engine.distributed import setup_device
from mtldiag.engine.jacobian import SharedLayout
from mtldiag.engine.probe import ProbeStep
from mtldiag.engine.representation import choose_representation, metric_layers, space_of
from mtldiag.errors import Interrupted, RecordsError, TrainingError
from mtldiag.methods.base import Method
from mtldiag.report import write_report
from mtldiag.rundir.schema import Summary, new_summary
from mtldiag.rundir.summary import conclude_profile
from mtldiag.rundir.writer import RunWriter, default_run_dir, environment
from mtldiag.runs.losses import label_stats
from mtldiag.runs.prepare import Prepared
from mtldiag.runs.train import Observer, prepare, run_context, train_run
from mtldiag.spec import MethodSpec, Spec, load_spec, parse_method, spec_to_yaml, values
from mtldiag.spec.values import OPTIONS
from mtldiag.trackers.base import TrackerSetup, flat_params
from mtldiag.trackers.factory import open_trackers, parse_sink_names
from mtldiag.trackers.hub import Trackers


@dataclass(frozen=True)
class ProfileResult:
    run_dir: Path
    summary: dict[str, Any]


def _as_spec(spec: Spec | str | Path | None) -> Spec:
    return spec if isinstance(spec, Spec) else load_spec(spec)


def base_summary(
    spec: Spec,
    kind: Literal["profile", "compare"],
    tasks: list[str],
    layout: SharedLayout,
    device: str,
    representation: str | None = None,
    spaces: Sequence[str] | None = None,
) -> Summary:
    """The summary of a run directory of ``spec`` before any run ended.

    ``representation``: the module whose output the metrics are taken on (one "layer", whose
    size the layer ranking does not weigh); None: the shared parameters' layers and sizes.
    ``spaces``: the gradient spaces of a comparison's runs, instead (both: both layer lists).
    """
    if spaces is None:
        spaces = [space_of(representation)]
    layers: list[str] = []
    if "parameters" in spaces:
        layers += list(layout.layers)
    if "representation" in spaces:
        layers += metric_layers("representation", layout.layers)
    if "parameters" not in spaces:
        return new_summary(kind, spec.name, tasks, layers, device)
    sizes = dict(zip(layout.layers, layout.layer_sizes, strict=True))
    return new_summary(kind, spec.name, tasks, layers, device, layer_params=sizes)


def resolved_spec(spec: Spec, section: str, resolved: dict[str, Any]) -> Spec:
    """``spec`` with the run's parameters (options and keyword overrides included) written
    into ``section``, so the run directory's spec.yaml says what the run was asked to do: a
    rebuild after a kill compares the steps done with these."""
    base = spec.raw.get(section) if isinstance(spec.raw.get(section), dict) else {}
    return replace(spec, raw={**spec.raw, "seed": spec.seed, section: {**base, **resolved}})


def tracker_setup(spec: Spec, run_dir: Path, kind: str, resolved: dict[str, Any]) -> TrackerSetup:
    """What the trackers of one command are told: names, group, the resolved spec as params."""
    params = flat_params({**spec.raw, kind: resolved})
    return TrackerSetup(run_dir, spec.name, f"{spec.name}-{run_dir.name}", kind, params)


def open_run_trackers(
    writer: RunWriter, names: Any, spec: Spec, kind: str, resolved: dict[str, Any]
) -> Trackers:
    """The trackers of a run whose directory ``writer`` has just claimed (its final name); a
    tracker that cannot start gives the directory back (removed if still empty)."""
    try:
        return open_trackers(names, tracker_setup(spec, writer.path, kind, resolved))
    except BaseException:
        writer.abandon()
        raise


def create_method(ms: MethodSpec) -> Method:
    """A fresh method instance for one run (never one shared between compared runs)."""
    return methods.create(ms.name, **ms.hparams)


def run_profile(
    spec: Spec | str | Path | None = None,
    *,
    out: str | Path | None = None,
    steps: int | None = None,
    every: int | None = None,
    device: str | None = None,
    seed: int | None = None,
    method: str | MethodSpec | None = None,
    observer: Observer | None = None,
    preview: bool = False,
    log: str | list[str] | None = None,
    wrt: str | None = None,
) -> ProfileResult:
    """Profile ``spec`` (a path, a :class:`Spec`, or ``mtldiag.yaml``): train, record, diagnose.

    Keyword arguments override the spec (``log``: trackers, e.g. ``"tensorboard,mlflow"``,
    else the spec's ``log:``). On a NaN loss raises :class:`TrainingError`, on
    Ctrl-C :class:`Interrupted`; in both cases ``summary.json`` of the steps done is written
    first and the message names the run directory. ``wrt``: ``representation`` or
    ``parameters`` (default: the spec's ``representation:``, else parameters).
    """
    spec = _with_options(_as_spec(spec), device, seed)
    n_steps = values.steps(OPTIONS, "--steps", steps) if steps is not None else spec.profile.steps
    n_every = values.every(OPTIONS, "--every", every) if every is not None else spec.profile.every
    ms = parse_method(method, spec.method_hparams) if method is not None else spec.profile.method
    method_obj = create_method(ms)
    dev = setup_device(spec.device)  # under torchrun: process group, this rank's device

    prep = prepare(spec, spec.seed, dev)
    # A method's own space (profile --method mgda@representation) wins over --wrt.
    space = ms.wrt or wrt
    rep = choose_representation(prep.model, prep.selection.layout.names, spec.representation, space)
    # Fit the method to this run (fixed weights' tasks, prior losses) before any record exists.
    stats = label_stats(spec, prep.loader)
    create_method(ms).reset(run_context(prep, stats, n_steps))
    run_dir = Path(out) if out is not None else default_run_dir(spec.name)
    resolved = {"steps": n_steps, "every": n_every, "method": ms.label}
    names = parse_sink_names(log) if log is not None else spec.log
    # A default name is made unique when the folder is created; --out is taken as given. The
    # folder is claimed (empty, locked) before the trackers open: TensorBoard writes inside it.
    writer = RunWriter(run_dir, prep.tasks, fresh=out is None)
    run_dir = writer.claim()
    trackers = open_run_trackers(writer, names, spec, "profile", resolved)
    writer.open(spec_to_yaml(resolved_spec(spec, "profile", resolved)), environment(dev))
    summary = base_summary(spec, "profile", prep.tasks, prep.selection.layout, str(dev), rep)
    summary["profile"] = resolved
    summary["jacobian"] = space_of(rep)

    preview_acc, on_probe = _preview(prep, preview)
    try:
        trackers.start_run(ms.label, spec.seed, prep.tasks)
        run = train_run(
            prep,
            method_obj,
            ms.label,
            n_steps,
            n_every,
            writer,
            observer,
            on_probe=on_probe,
            stats=stats,
            trackers=trackers,
            representation=rep,
        )
    except TrainingError as exc:
        _finish(writer, summary, exc.run_result, "failed", preview_acc, trackers)  # type: ignore[attr-defined]
        exc.message += f" Records so far: {run_dir}"
        raise
    except KeyboardInterrupt as exc:
        result = getattr(exc, "run_result", None)
        _finish(writer, summary, result, "interrupted", preview_acc, trackers)
        raise Interrupted(
            f"interrupted; the {result['steps'] if result else 0} steps done are kept in "
            f"{run_dir}.",
            hint=f"mtldiag report {run_dir} rebuilds the report from them",
        ) from None
    finally:
        writer.close()
    _finish(writer, summary, run, "complete", preview_acc, trackers)
    return ProfileResult(run_dir, summary)


def _with_options(spec: Spec, device: str | None, seed: int | None) -> Spec:
    """The spec with ``--device`` / ``--seed`` applied (and recorded in its raw mapping)."""
    raw_over: dict[str, Any] = {}
    if device is not None:
        raw_over["device"] = device
    if seed is not None:
        raw_over["seed"] = values.seed(OPTIONS, "--seed", seed)
    if raw_over:
        spec = replace(spec, raw={**spec.raw, **raw_over}, **raw_over)
    return spec


def _preview(
    prep: Prepared, wanted: bool
) -> tuple[PreviewAccumulator | None, Callable[[ProbeStep], None] | None]:
    """``--preview``: an accumulator of every Gramian method's effect, fed by each step."""
    if not wanted:
        return None, None
    acc = PreviewAccumulator(prep.tasks, dtype=prep.selection.layout.params[0].dtype)

    def on_probe(step: ProbeStep) -> None:
        if step.gramian is not None:
            acc.add(step.gramian, torch.tensor(step.losses))

    return acc, on_probe


def _finish(
    writer: RunWriter,
    summary: dict[str, Any],
    run: dict[str, Any] | None,
    status: str,
    preview_acc: Any = None,
    trackers: Trackers | None = None,
) -> None:
    if trackers is not None:
        trackers.end_run(run)
    preview = preview_acc.summary() if preview_acc is not None else None
    conclude_profile(summary, run, status, preview)
    close_run(writer, summary, trackers)


def close_run(writer: RunWriter, summary: dict[str, Any], trackers: Trackers | None = None) -> None:
    """Write ``summary.json``, then the report built from the whole run directory; then hand
    both to the trackers and close them."""
    writer.write_summary(summary)
    if writer.enabled:
        try:
            write_report(writer.path)
        except OSError as exc:  # a full disk after the summary: the summary is the record
            raise RecordsError(
                f"cannot write the report in '{writer.path}': {exc.strerror or exc}.",
                hint=f"free some space, then `mtldiag report {writer.path}` writes it",
            ) from exc
    if trackers is not None:
        trackers.finish(summary, writer.path)
        trackers.close()
