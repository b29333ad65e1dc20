"""Whether a JSON value has the shape a TypedDict of :mod:`mtldiag.rundir.schema` declares.

``summary.json`` is read by ``check`` and ``report`` long after it was written, and is edited
by hand or by other tools: a ``"runs": 5`` or a ``"steps": "many"`` must be one message that
names the key, not a ``TypeError`` deep in a table. The TypedDicts are the one description of
the format, so the check reads them rather than repeating them.
"""

from __future__ import annotations

import types
import typing
from typing import Any, Literal, Union


def _name(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def problem(value: Any, expected: Any, where: str = "") -> str | None:
    """The first place where ``value`` does not fit ``expected`` (``'runs[0].steps': ...``),
    or ``None`` when it fits. Unknown keys are allowed (a newer writer may add some), missing
    ones too."""
    origin = typing.get_origin(expected)
    if expected is Any:
        return None
    if origin in (Union, types.UnionType):
        fits = [problem(value, option, where) for option in typing.get_args(expected)]
        if all(fits):
            # When only null is wrong the other option's message is the useful one.
            real = [
                p for p, o in zip(fits, typing.get_args(expected), strict=True) if o is not None
            ]
            return real[0] if len(real) == 1 else fits[0]
        return None
    if origin is Literal:
        choices = typing.get_args(expected)
        if value in choices:
            return None
        return f"'{where}': must be one of {', '.join(map(repr, choices))}, not {value!r}."
    if expected is type(None):
        return None if value is None else f"'{where}': must be null, not {_name(value)}."
    if typing.is_typeddict(expected):
        return _typed_dict(value, expected, where)
    if origin is list:
        if not isinstance(value, list):
            return f"'{where}': must be a list, not {_name(value)}."
        (item,) = typing.get_args(expected)
        for i, v in enumerate(value):
            if p := problem(v, item, f"{where}[{i}]"):
                return p
        return None
    if origin is dict:
        if not isinstance(value, dict):
            return f"'{where}': must be a mapping, not {_name(value)}."
        _, item = typing.get_args(expected)
        for k, v in value.items():
            if p := problem(v, item, f"{where}.{k}" if where else str(k)):
                return p
        return None
    return _scalar(value, expected, where)


def _scalar(value: Any, expected: Any, where: str) -> str | None:
    if expected is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        return None if ok else f"'{where}': must be a number, not {_name(value)} {value!r}."
    if expected is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
        return None if ok else f"'{where}': must be a whole number, not {_name(value)} {value!r}."
    if expected is bool:
        return None if isinstance(value, bool) else f"'{where}': must be true or false."
    if expected is str:
        return None if isinstance(value, str) else f"'{where}': must be text, not {_name(value)}."
    return None  # a type the schema does not constrain further


def _typed_dict(value: Any, expected: Any, where: str) -> str | None:
    if not isinstance(value, dict):
        return f"'{where or '.'}': must be a mapping, not {_name(value)}."
    # Only the keys that are there: summaries written by hand, by tests or by older versions
    # leave some out, and every reader takes a missing key as "not recorded".
    hints = typing.get_type_hints(expected)
    for key, sub in hints.items():
        if key in value and (p := problem(value[key], sub, f"{where}.{key}" if where else key)):
            return p
    return None
