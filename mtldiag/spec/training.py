"""The spec's training keys: ``optimizer``, ``scheduler``, ``accumulate``, ``clip_grad_norm``,
``clip_grad_value`` and ``missing``; and the one place that names the optimizer and scheduler
classes (every class of ``torch.optim`` and ``torch.optim.lr_scheduler``, case-insensitive).

A named optimizer or scheduler is built once on a dummy parameter while the spec is read, so
a wrong name, argument or value stops before any training with the key it sits under.
"""

from __future__ import annotations

import difflib
import inspect
from typing import Any

import torch

from mtldiag.errors import SpecError, did_you_mean
from mtldiag.spec.model import INTERVALS, MISSING, OptimizerSpec, SchedulerSpec, TrainSpec
from mtldiag.spec.values import Where, as_number, boolean, is_number, number, whole

_LR = torch.optim.lr_scheduler
# Not steppable by a plain loop: LBFGS's step needs a closure that re-evaluates the loss,
# ReduceLROnPlateau's step a validation metric.
_NOT_OPTIMIZERS = ("LBFGS",)
_NOT_SCHEDULES = ("ReduceLROnPlateau",)
_OPTIMIZER_KEYS = ("name", "factory", "kwargs")
_SCHEDULER_KEYS = ("name", "factory", "kwargs", "interval")


def optimizer_classes() -> dict[str, type[torch.optim.Optimizer]]:
    """Every optimizer class of ``torch.optim``, by its name."""
    base = torch.optim.Optimizer
    return {
        n: c
        for n, c in vars(torch.optim).items()
        if isinstance(c, type)
        and issubclass(c, base)
        and c is not base
        and n[0] != "_"
        and n not in _NOT_OPTIMIZERS
    }


def scheduler_classes() -> dict[str, type]:
    """Every schedule class of ``torch.optim.lr_scheduler``, by its name."""
    base = _LR.LRScheduler
    return {
        n: c
        for n, c in vars(_LR).items()
        if isinstance(c, type)
        and issubclass(c, base)
        and c is not base
        and n[0] != "_"
        and n not in _NOT_SCHEDULES
    }


def lookup_class(kind: str, name: str, classes: dict[str, type]) -> type:
    """The class named ``name`` (any case); a wrong name suggests the closest one."""
    by_lower = {n.lower(): c for n, c in classes.items()}
    found = by_lower.get(str(name).lower())
    if found is None:
        # Matched case-insensitively, suggested in the class's own spelling.
        near = difflib.get_close_matches(str(name).lower(), list(by_lower), n=1, cutoff=0.5)
        close = f" Did you mean '{by_lower[near[0]].__name__}'?" if near else ""
        raise SpecError(
            f"unknown {kind} '{name}'.{close}",
            hint=f"any class of torch.optim{'' if kind == 'optimizer' else '.lr_scheduler'}, "
            f"e.g. {', '.join(list(classes)[:6])}; or 'factory: module:fn'",
        )
    return found


def construct_optimizer(ospec: OptimizerSpec, params: Any) -> torch.optim.Optimizer:
    """The named optimizer over ``params`` (not for the ``factory`` form)."""
    assert ospec.name is not None
    cls = optimizer_classes()[ospec.name]
    return cls(params, **ospec.kwargs)


def construct_scheduler(sspec: SchedulerSpec, optimizer: torch.optim.Optimizer) -> Any:
    """The named scheduler on ``optimizer``, nested ``schedulers`` built first."""
    assert sspec.name is not None
    cls = scheduler_classes()[sspec.name]
    kwargs = dict(sspec.kwargs)
    if "schedulers" in kwargs:
        kwargs["schedulers"] = [construct_scheduler(s, optimizer) for s in kwargs["schedulers"]]
    # ChainedScheduler takes the schedulers first and the optimizer by keyword.
    return cls(optimizer=optimizer, **kwargs)


def parse_training(ctx: Where, data: dict[str, Any]) -> tuple[Any, ...]:
    """``(OptimizerSpec, SchedulerSpec | None, TrainSpec)`` from the top-level mapping."""
    optimizer = _optimizer(ctx, data.get("optimizer", {"name": "Adam", "lr": 1e-3}))
    scheduler = None
    if data.get("scheduler") is not None:
        scheduler = _scheduler(ctx, "scheduler", data["scheduler"], top=True)
        if optimizer.name is not None and scheduler.name is not None:
            _try(ctx, "scheduler", scheduler.name, _dry_run, optimizer, scheduler)
    accumulate = whole(ctx, "accumulate", data.get("accumulate", 1), minimum=1)
    clips = {}
    for key in ("clip_grad_norm", "clip_grad_value"):
        value = data.get(key)
        clips[key] = None if value is None else number(ctx, key, value, positive=True)
    missing = str(data.get("missing", "error"))
    if missing not in MISSING:
        raise ctx.err("missing", f"must be error or skip, not {missing!r}.")
    if missing == "skip" and data.get("losses") is not None:
        raise ctx.err(
            "missing",
            "'skip' reads ignore_index/NaN targets of the tasks: form; a losses: function "
            "cannot be read that way.",
            "drop 'missing:' and return None for an absent task from the losses function",
        )
    if missing == "skip" and accumulate > 1:
        raise ctx.err(
            "missing", "'skip' does not combine with accumulate > 1 yet.", "drop one of them"
        )
    return optimizer, scheduler, TrainSpec(accumulate, missing=missing, **clips)


def _dry_run(optimizer: OptimizerSpec, scheduler: SchedulerSpec | None = None) -> None:
    opt = construct_optimizer(optimizer, [torch.zeros(1, requires_grad=True)])
    if scheduler is not None:
        construct_scheduler(scheduler, opt)


def _try(ctx: Where, key: str, name: str, fn: Any, *args: Any) -> None:
    try:
        fn(*args)
    except (TypeError, ValueError, KeyError) as exc:
        raise ctx.err(key, f"{name} rejected its arguments: {exc}") from None


def _optimizer(ctx: Where, value: Any) -> OptimizerSpec:
    if not isinstance(value, dict):
        raise ctx.err("optimizer", "must be a mapping like '{name: AdamW, lr: 1.0e-3}'.")
    if "factory" in value:
        ctx.check_keys(value, ("factory", "kwargs"), "optimizer")
        return OptimizerSpec(None, _factory_kwargs(ctx, "optimizer", value), value["factory"])
    if "name" not in value:
        raise ctx.err("optimizer", "needs a 'name' (a torch.optim class) or a 'factory'.")
    cls = _lookup(ctx, "optimizer", value["name"], optimizer_classes())
    given = {k: v for k, v in value.items() if k != "name"}
    spec = OptimizerSpec(cls.__name__, _kwargs(ctx, "optimizer", cls, given, ("params",)))
    _try(ctx, "optimizer", cls.__name__, _dry_run, spec)
    return spec


def _scheduler(ctx: Where, key: str, value: Any, top: bool) -> SchedulerSpec:
    if not isinstance(value, dict):
        raise ctx.err(key, "must be a mapping like '{name: CosineAnnealingLR, T_max: 1000}'.")
    interval = str(value.get("interval", "step"))
    if interval not in INTERVALS:
        raise ctx.err(f"{key}.interval", f"must be step or epoch, not {interval!r}.")
    if not top and "interval" in value:
        raise ctx.err(f"{key}.interval", "is set once, on the outer scheduler.")
    if "factory" in value:
        ctx.check_keys(value, ("factory", "kwargs", "interval"), key)
        return SchedulerSpec(None, _factory_kwargs(ctx, key, value), value["factory"], interval)
    if "name" not in value:
        raise ctx.err(key, "needs a 'name' (a torch.optim.lr_scheduler class) or a 'factory'.")
    cls = _lookup(ctx, key, value["name"], scheduler_classes())
    given = {k: v for k, v in value.items() if k not in ("name", "interval")}
    kwargs = _kwargs(ctx, key, cls, given, ("optimizer",))
    if "schedulers" in kwargs:
        inner = kwargs["schedulers"]
        if not isinstance(inner, list) or not inner:
            raise ctx.err(f"{key}.schedulers", "must be a list of '{name: ..., ...}' mappings.")
        kwargs["schedulers"] = [
            _scheduler(ctx, f"{key}.schedulers[{i}]", s, top=False) for i, s in enumerate(inner)
        ]
        if any(s.name is None for s in kwargs["schedulers"]):
            raise ctx.err(f"{key}.schedulers", "nested schedulers are named, not factories.")
    return SchedulerSpec(cls.__name__, kwargs, None, interval)


def _lookup(ctx: Where, key: str, name: Any, classes: dict[str, type]) -> type:
    try:
        return lookup_class(key.split(".")[0], str(name), classes)
    except SpecError as exc:
        raise ctx.err(f"{key}.name", exc.message, exc.hint) from None


def _factory_kwargs(ctx: Where, key: str, value: dict[str, Any]) -> dict[str, Any]:
    if not isinstance(value["factory"], str) or ":" not in value["factory"]:
        raise ctx.err(f"{key}.factory", "must be a 'module:fn' or 'file.py:fn' string.")
    kwargs = value.get("kwargs") or {}
    if not isinstance(kwargs, dict):
        raise ctx.err(f"{key}.kwargs", "must be a mapping of keyword arguments.")
    return {k: as_number(v) for k, v in kwargs.items()}


def _kwargs(
    ctx: Where, key: str, cls: type, given: dict[str, Any], positional: tuple[str, ...]
) -> dict[str, Any]:
    """Keyword arguments of ``cls``, each checked against its default's type."""
    sig = inspect.signature(cls.__init__).parameters
    skip = ("self", *positional)
    accepted = [n for n in sig if n not in skip and sig[n].kind.name != "VAR_KEYWORD"]
    out: dict[str, Any] = {}
    for name, value in given.items():
        where = f"{key}.{name}"
        if name not in accepted:
            raise ctx.err(
                where,
                f"{cls.__name__} takes no argument '{name}'.{did_you_mean(name, accepted)}",
                f"{cls.__name__} takes: {', '.join(accepted)}",
            )
        out[name] = _typed(ctx, where, sig[name], value)
    for name in accepted:
        p = sig[name]
        if p.default is inspect.Parameter.empty and p.kind.name != "VAR_POSITIONAL":
            if name not in out:
                raise ctx.err(f"{key}.{name}", f"is required by {cls.__name__}.")
    return out


_NUMERIC = {"int", "float", "Tensor", "torch.Tensor"}


def _numeric(param: inspect.Parameter) -> str | None:
    """``"int"``/``"float"`` when the annotation says a number (or None) goes here."""
    ann = param.annotation
    text = ann if isinstance(ann, str) else getattr(ann, "__name__", str(ann))
    parts = {p.strip() for p in text.split("|")} - {"None"}
    if parts and parts <= _NUMERIC and parts & {"int", "float"}:
        return "float" if "float" in parts else "int"
    return None


def _typed(ctx: Where, where: str, param: inspect.Parameter, value: Any) -> Any:
    """``value`` checked against (and converted like) the argument's default or annotation."""
    default, kind = param.default, _numeric(param)
    if isinstance(default, bool):
        return boolean(ctx, where, value)
    if value is None and default is None:
        return None
    if kind or is_number(default) or isinstance(default, torch.Tensor):
        x = number(ctx, where, value)
        whole = kind == "int" or (kind is None and isinstance(default, int))
        return int(x) if whole and x.is_integer() else x
    if isinstance(default, tuple):
        if not isinstance(value, list | tuple):
            raise ctx.err(where, f"must be a list like {list(default)!r}, not {value!r}.")
        return tuple(number(ctx, f"{where}[{i}]", v) for i, v in enumerate(value))
    if isinstance(value, list):
        return [as_number(v) for v in value]
    return as_number(value)
