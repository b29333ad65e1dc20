"""Reading the YAML spec: ``yaml.safe_load`` with YAML 1.2 numbers, then each section checked
into the dataclasses of :mod:`mtldiag.spec.model` (every error names the file, the key and the
fix); the training keys are read by :mod:`mtldiag.spec.training`."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

from mtldiag.analysis.rules import parse_rules
from mtldiag.errors import MtldiagError, SpecError, did_you_mean
from mtldiag.methods.registry import lookup
from mtldiag.methods.syntax import MethodSpec, canonical_name, parse_method, parse_methods
from mtldiag.spec import values
from mtldiag.spec.model import (
    BUILTIN_LOSSES,
    DEFAULT_SPEC,
    DEVICES,
    PRECISIONS,
    CompareSpec,
    FactorySpec,
    ProfileSpec,
    Spec,
    TaskSpec,
)
from mtldiag.spec.training import parse_training
from mtldiag.spec.values import Where, boolean, load_yaml, number, whole
from mtldiag.trackers.factory import parse_sink_names

_TOP_KEYS = (
    "name",
    "seed",
    "device",
    "precision",
    "model",
    "data",
    "tasks",
    "losses",
    "shared",
    "optimizer",
    "profile",
    "compare",
    "checks",
    "eval",
    "representation",
    "method",
    "methods",
    "scheduler",
    "accumulate",
    "clip_grad_norm",
    "clip_grad_value",
    "missing",
    "log",
)
_FACTORY_KEYS = ("factory", "kwargs")
_DATA_KEYS = ("factory", "kwargs", "val")
_TASK_KEYS = ("output", "target", "loss", "weight", "higher_is_better", "loss_kwargs")
_PROFILE_KEYS = ("steps", "every", "method")
_COMPARE_KEYS = (
    "methods",
    "steps",
    "seeds",
    "every",
    "single_task",
    "sweep",
    "hyperparams",
    "jobs",
)


def load_spec(path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> Spec:
    """Read and validate a spec file (``mtldiag.yaml`` in the current folder by default).

    ``overrides`` are applied on top of the file's top-level mapping before validation, e.g.
    ``{"device": "cpu", "profile": {"steps": 10}}`` (nested mappings are merged).
    """
    if path is None:
        path = Path(DEFAULT_SPEC)
        if not path.exists():
            raise SpecError(
                f"no spec given and no '{DEFAULT_SPEC}' in {Path.cwd()}.",
                hint="pass a spec (mtldiag profile my_spec.yaml), or start from "
                "sample_configs/synthetic.yaml: cp sample_configs/synthetic.yaml mtldiag.yaml",
            )
    path = Path(path)
    if not path.exists():
        raise SpecError(f"spec file '{path}' does not exist.", hint="check the path")
    if path.is_dir():
        raise SpecError(f"'{path}' is a directory, not a spec file.")
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SpecError(f"cannot read spec file '{path}': {exc.strerror}.") from exc
    except UnicodeDecodeError as exc:
        raise SpecError(
            f"spec file '{path}' is not UTF-8 text (byte {exc.start}): is it the right file?",
            hint="a spec is a YAML text file, e.g. sample_configs/synthetic.yaml",
        ) from None
    try:
        data = load_yaml(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise SpecError(
            f"{path}: invalid YAML{where}: {problem}.",
            hint="check the indentation and the ':' after each key",
        ) from None
    return parse_spec(data, source=str(path), path=path.resolve(), overrides=overrides)


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for k, v in extra.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v)
        else:
            out[k] = v
    return out


def parse_spec(
    data: Any,
    source: str = "<spec>",
    path: Path | None = None,
    overrides: dict[str, Any] | None = None,
) -> Spec:
    """Validate an already-loaded mapping (see :func:`load_spec`)."""
    ctx = Where(source)
    data = _top_level(ctx, data, overrides)
    device, precision = _device(ctx, data)
    model, data_spec, val = _data(ctx, data)
    losses = data.get("losses")
    if losses is not None and not isinstance(losses, str):
        raise ctx.err("losses", "must be a 'module:function' string.")
    tasks = _tasks(ctx, data.get("tasks"), general=losses is not None)
    optimizer, scheduler, train = parse_training(ctx, data)
    method_hparams = _method_hparams(ctx, data.get("methods") or {})
    checks = data.get("checks") or []
    if not isinstance(checks, list) or not all(isinstance(c, dict) for c in checks):
        raise ctx.err("checks", "must be a list of rules like '{metric: conflict_rate, max: 0.4}'.")
    if checks:
        parse_rules(checks, f"{source}: 'checks'")  # a bad rule is refused now, not after training
    ev = data.get("eval")
    if ev is not None and not isinstance(ev, str):
        raise ctx.err("eval", "must be a 'module:function' string.")
    return Spec(
        name=str(data.get("name") or (path.stem if path else "run")),
        seed=values.seed(ctx, "seed", data.get("seed", 0)),
        device=device,
        precision=precision,
        model=model,
        data=data_spec,
        val=val,
        tasks=tasks,
        losses=losses,
        shared=_shared(ctx, data.get("shared", "auto")),
        optimizer=optimizer,
        profile=_profile(ctx, data.get("profile") or {}, data.get("method"), method_hparams),
        compare=_compare(ctx, data.get("compare") or {}, method_hparams),
        checks=tuple(checks),
        eval=ev,
        method_hparams={k: dict(v) for k, v in method_hparams.items()},
        raw=data,
        path=path,
        scheduler=scheduler,
        train=train,
        log=_log(ctx, data.get("log")),
        representation=_representation(ctx, data.get("representation")),
    )


def _representation(ctx: Where, value: Any) -> str | None:
    """``representation:``: the module whose output is the shared ``z``, or ``auto``."""
    if value is not None and (not isinstance(value, str) or not value):
        raise ctx.err("representation", "must be a module name (e.g. 'trunk') or 'auto'.")
    return value


def _log(ctx: Where, value: Any) -> tuple[str, ...]:
    """The trackers of ``log:`` (a name, a comma list or a list), checked by the trackers."""
    try:
        return parse_sink_names(value)
    except MtldiagError as exc:
        raise ctx.err("log", exc.message, exc.hint) from None


def _top_level(ctx: Where, data: Any, overrides: dict[str, Any] | None) -> dict[str, Any]:
    """The top-level mapping, overrides merged in, its keys known and the required ones there."""
    if data is None:
        raise ctx.err("", "the spec is empty.", "see sample_configs/synthetic.yaml for a start")
    if not isinstance(data, dict):
        raise ctx.err("", f"the top level must be a mapping of keys, not a {type(data).__name__}.")
    if overrides:
        data = _merge(data, overrides)
    ctx.check_keys(data, _TOP_KEYS, "")
    for required in ("model", "data"):
        if required not in data:
            raise ctx.err(required, "is required.", f"add '{required}: {{factory: module:fn}}'")
    if "tasks" not in data and "losses" not in data:
        raise ctx.err(
            "tasks",
            "give either a 'tasks:' map or a 'losses: module:fn' function.",
            "see the spec example in README.md",
        )
    return data


def _device(ctx: Where, data: dict[str, Any]) -> tuple[str, str]:
    device = str(data.get("device", "auto"))
    if device.split(":")[0] not in DEVICES:
        raise ctx.err(
            "device", f"'{device}' is not a device.", "use auto, cpu, cuda, cuda:N or mps"
        )
    precision = str(data.get("precision", "fp32"))
    if precision not in PRECISIONS:
        raise ctx.err(
            "precision",
            f"'{precision}' is not supported.{did_you_mean(precision, PRECISIONS)}",
            "use fp32, bf16 or fp16",
        )
    return device, precision


def _data(ctx: Where, data: dict[str, Any]) -> tuple[FactorySpec, FactorySpec, FactorySpec | None]:
    model = _factory(ctx, "model", data["model"], _FACTORY_KEYS)
    section = data["data"]
    data_spec = _factory(ctx, "data", section, _DATA_KEYS)
    val = None
    if isinstance(section, dict) and section.get("val") is not None:
        val = _factory(ctx, "data.val", section["val"], _FACTORY_KEYS)
    return model, data_spec, val


def _shared(ctx: Where, shared: Any) -> str | tuple[str, ...]:
    if isinstance(shared, str):
        return shared if shared == "auto" else (shared,)
    if isinstance(shared, list) and shared and all(isinstance(s, str) for s in shared):
        return tuple(shared)
    raise ctx.err("shared", "must be 'auto' or a list of glob patterns over parameter names.")


def _method_hparams(ctx: Where, value: Any) -> dict[str, dict[str, Any]]:
    """``methods:`` keyed by canonical name, so ``methods: {uncertainty: ...}`` also reaches
    ``--method uw``."""
    if not isinstance(value, dict) or not all(isinstance(v, dict) for v in value.values()):
        raise ctx.err(
            "methods", "must map method names to hyper-parameters, e.g. 'gradnorm: {alpha: 1.5}'."
        )
    out: dict[str, dict[str, Any]] = {}
    for key, hp in value.items():
        name = canonical_name(str(key))
        if name is None:
            try:
                lookup(str(key))
            except MtldiagError as exc:
                raise ctx.err(f"methods.{key}", exc.message) from None
        out.setdefault(name or str(key), {}).update(hp)
    return out


def _factory(ctx: Where, key: str, value: Any, allowed: tuple[str, ...]) -> FactorySpec:
    if isinstance(value, str):
        return FactorySpec(value)
    if not isinstance(value, dict):
        raise ctx.err(key, "must be 'module:fn' or a mapping with 'factory' and 'kwargs'.")
    ctx.check_keys(value, allowed, key)
    if "factory" not in value or not isinstance(value["factory"], str):
        raise ctx.err(f"{key}.factory", "is required: a 'module:fn' or 'file.py:fn' string.")
    kwargs = value.get("kwargs") or {}
    if not isinstance(kwargs, dict):
        raise ctx.err(f"{key}.kwargs", "must be a mapping of keyword arguments.")
    return FactorySpec(value["factory"], dict(kwargs))


def _tasks(ctx: Where, value: Any, general: bool) -> tuple[TaskSpec, ...]:
    if value is None:
        return ()  # names come from the losses function's output
    if isinstance(value, list) and general and all(isinstance(v, str) for v in value):
        return tuple(TaskSpec(v) for v in value)
    if not isinstance(value, dict) or not value:
        raise ctx.err("tasks", "must map task names to '{output, target, loss}'.")
    out = []
    for name, entry in value.items():
        key = f"tasks.{name}"
        entry = entry or {}
        if not isinstance(entry, dict):
            raise ctx.err(key, "must be a mapping like '{output: x, target: x, loss: mse}'.")
        ctx.check_keys(entry, _TASK_KEYS, key)
        loss = entry.get("loss")
        if not general:
            if loss is None:
                raise ctx.err(f"{key}.loss", "is required.", "one of " + ", ".join(BUILTIN_LOSSES))
            if loss not in BUILTIN_LOSSES and ":" not in str(loss):
                raise ctx.err(
                    f"{key}.loss",
                    f"unknown loss '{loss}'.{did_you_mean(str(loss), BUILTIN_LOSSES)}",
                    "use " + ", ".join(BUILTIN_LOSSES) + " or 'module:callable'",
                )
        weight = number(ctx, f"{key}.weight", entry.get("weight", 1.0), minimum=0)
        output = entry.get("output", name)
        target = entry.get("target", name)
        out.append(
            TaskSpec(
                name=str(name),
                output=output,
                target=target,
                loss=loss,
                weight=float(weight),
                higher_is_better=boolean(
                    ctx, f"{key}.higher_is_better", entry.get("higher_is_better", False)
                ),
                loss_kwargs=dict(entry.get("loss_kwargs") or {}),
            )
        )
    return tuple(out)


def _profile(ctx: Where, section: Any, method: Any, hp: dict[str, Any]) -> ProfileSpec:
    if not isinstance(section, dict):
        raise ctx.err("profile", "must be a mapping like '{steps: 200, every: 1}'.")
    ctx.check_keys(section, _PROFILE_KEYS, "profile")
    steps = values.steps(ctx, "profile.steps", section.get("steps", 200))
    every = values.every(ctx, "profile.every", section.get("every", 1))
    m = section.get("method", method) or "ew"
    try:
        ms = parse_method(m, hp)
    except SpecError as exc:
        raise ctx.err("profile.method", exc.message, exc.hint) from None
    return ProfileSpec(steps, every, ms)


def _compare(ctx: Where, section: Any, hp: dict[str, Any]) -> CompareSpec:
    if not isinstance(section, dict):
        raise ctx.err("compare", "must be a mapping like '{methods: [ew, pcgrad], steps: 500}'.")
    ctx.check_keys(section, _COMPARE_KEYS, "compare")
    extra_hp = section.get("hyperparams") or {}
    if not isinstance(extra_hp, dict):
        raise ctx.err("compare.hyperparams", "must map method names to hyper-parameters.")
    merged = {**hp, **extra_hp}
    methods: tuple[MethodSpec, ...] = ()
    if section.get("methods") is not None:
        try:
            methods = parse_methods(section["methods"], merged)
        except SpecError as exc:
            raise ctx.err("compare.methods", exc.message, exc.hint) from None
    steps = section.get("steps")
    if steps is not None:
        steps = values.steps(ctx, "compare.steps", steps)
    seeds = section.get("seeds", [0])
    if not isinstance(seeds, list):
        seeds = [seeds]
    if not seeds:
        raise ctx.err("compare.seeds", "must be a non-empty list of whole numbers.")
    seeds = [values.seed(ctx, f"compare.seeds[{i}]", s) for i, s in enumerate(seeds)]
    every = values.every(ctx, "compare.every", section.get("every", 10))
    sweep = values.sweep(ctx, "compare.sweep", section.get("sweep", 0))
    jobs = whole(ctx, "compare.jobs", section.get("jobs", 1), minimum=1)
    single = boolean(ctx, "compare.single_task", section.get("single_task", False))
    return CompareSpec(methods, steps, tuple(seeds), every, single, sweep, jobs)


def spec_to_yaml(spec: Spec) -> str:
    """The resolved spec as YAML (what a run directory keeps as ``spec.yaml``)."""
    return yaml.safe_dump(spec.raw, sort_keys=False)
