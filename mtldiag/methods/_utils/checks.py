"""Hyper-parameter checks: one sentence naming the parameter, its value and what is allowed.

Template (TorchJD's): "Parameter `c` should be a non-negative float. Found `c = -1`."
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from mtldiag.errors import did_you_mean
from mtldiag.methods.base import MethodError


def _fail(name: str, what: str, value: Any, hint: str = "") -> MethodError:
    return MethodError(f"Parameter `{name}` should be {what}. Found `{name} = {value!r}`.{hint}")


def real(
    name: str,
    value: Any,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
    what: str | None = None,
) -> float:
    """A finite real number in ``[low, high]`` (ends open when asked); ints are accepted."""
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    if ok:
        v = float(value)
        ok = math.isfinite(v)
        if ok and low is not None:
            ok = v > low if low_open else v >= low
        if ok and high is not None:
            ok = v < high if high_open else v <= high
    if not ok:
        if what is None:
            if low == 0 and high is None:
                what = "a positive float" if low_open else "a non-negative float"
            elif low is not None and high is not None:
                lo, hi = ("(" if low_open else "["), (")" if high_open else "]")
                what = f"a float in {lo}{low:g}, {high:g}{hi}"
            elif low is not None:
                what = f"a float {'>' if low_open else '>='} {low:g}"
            else:
                what = "a finite float"
        raise _fail(name, what, value)
    return float(value)


def integer(name: str, value: Any, *, low: int | None = None) -> int:
    """An int (a float with an integral value is accepted) ``>= low``."""
    v = value
    if isinstance(v, float) and v.is_integer():
        v = int(v)
    if isinstance(v, bool) or not isinstance(v, int) or (low is not None and v < low):
        what = (
            "an integer"
            if low is None
            else ("a positive integer" if low == 1 else f"an integer >= {low}")
        )
        raise _fail(name, what, value)
    return v


def boolean(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if value in (0, 1) and not isinstance(value, float):
        return bool(value)
    raise _fail(name, "true or false", value)


def choice(name: str, value: Any, allowed: Sequence[Any]) -> Any:
    if value in allowed:
        return value
    opts = " | ".join(str(a) for a in allowed)
    hint = did_you_mean(str(value), [str(a) for a in allowed])
    raise _fail(name, f"one of {opts}", value, hint)


def task_mapping(name: str, value: Any) -> dict[str, Any]:
    """A mapping from task names to per-task settings."""
    if not isinstance(value, dict) or not value:
        raise _fail(name, "a non-empty mapping from task names to values", value)
    return {str(k): v for k, v in value.items()}


def check_tasks(
    method: str, name: str, given: Sequence[str], tasks: Sequence[str], *, require_all: bool
) -> None:
    """Compare the tasks a hyper-parameter names with the run's tasks."""
    unknown = [t for t in given if t not in tasks]
    missing = [t for t in tasks if t not in given] if require_all else []
    if unknown or missing:
        parts = []
        if unknown:
            hint = did_you_mean(unknown[0], list(tasks)).strip().rstrip("?")
            hint = f" ({hint[0].lower()}{hint[1:]}?)" if hint else ""
            parts.append(
                f"names unknown task{'s' * (len(unknown) > 1)} "
                f"{', '.join(map(repr, unknown))}{hint}"
            )
        if missing:
            parts.append(
                f"has no entry for task{'s' * (len(missing) > 1)} {', '.join(map(repr, missing))}"
            )
        raise MethodError(
            f"{method}: `{name}` {' and '.join(parts)}; the run's tasks are "
            f"{', '.join(map(repr, tasks))}.",
            hint=f"give `{name}` "
            + ("exactly one entry per task" if require_all else "only tasks of the run"),
        )


def preference(method: str, value: Any) -> dict[str, float] | None:
    """A preference vector ``{task: weight}`` (non-negative, not all zero), or ``None``."""
    if value is None:
        return None
    given = task_mapping("preference", value)
    prefs = {t: real(f"preference.{t}", v, low=0.0) for t, v in given.items()}
    if not any(v > 0 for v in prefs.values()):
        raise _fail("preference", "at least one positive weight", value)
    return prefs


def preference_vector(method: str, prefs: dict[str, float], tasks: Sequence[str]) -> list[float]:
    """``prefs`` in the run's task order; it must name every task of the run, and no other."""
    check_tasks(method, "preference", list(prefs), list(tasks), require_all=True)
    return [prefs[t] for t in tasks]
