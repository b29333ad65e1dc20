"""Where a value sits in the spec, for messages, and the checks values share.

Every error names the file and the key (``spec.yaml: 'profile.steps': ...``) and, where one
exists, the fix; unknown keys suggest the closest valid one.
"""

from __future__ import annotations

import re
from typing import Any

import yaml

from mtldiag.errors import SpecError, did_you_mean


class Where:
    """Where we are in the file, for messages."""

    def __init__(self, source: str) -> None:
        self.source = source

    def err(self, key: str, problem: str, hint: str | None = None) -> SpecError:
        where = ": ".join(x for x in (self.source, f"'{key}'" if key else "") if x)
        return SpecError(f"{where}: {problem}", hint)

    def check_keys(self, section: dict[str, Any], allowed: tuple[str, ...], where: str) -> None:
        for key in section:
            if key not in allowed:
                prefix = f"{where}." if where else ""
                raise self.err(
                    f"{prefix}{key}",
                    f"unknown key.{did_you_mean(str(key), allowed)}",
                    "valid keys here: " + ", ".join(allowed),
                )


# Options of `profile`/`compare` (and their keyword arguments in Python) are checked by the
# same functions as the spec's keys, so both take the same values and say the same words.
OPTIONS = Where("")

# numpy's legacy RandomState takes seeds 0..2**32-1 (torch takes more): one bound for both.
SEED_MAX = 2**32 - 1
# A billion steps is days of training on the smallest model: a larger count is a typo.
STEPS_MAX = 10**9
# Each sweep point is one more training run per seed: a thousand is already days of runs, and
# the weights are built up front (a list of K vectors), so a larger K is a typo, not a plan.
SWEEP_MAX = 1000


def whole(ctx: Where, key: str, value: Any, minimum: int = 0, maximum: int | None = None) -> int:
    """A whole number >= ``minimum`` (and <= ``maximum``); ``1e3`` (text or float) counts when
    it is whole."""
    value = as_number(value)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    bad = isinstance(value, bool) or not isinstance(value, int) or value < minimum
    if bad or (maximum is not None and value > maximum):
        span = f">= {minimum}" if maximum is None else f"from {minimum} to {maximum}"
        raise ctx.err(key, f"must be a whole number {span}, not {value!r}.")
    return value


def seed(ctx: Where, key: str, value: Any) -> int:
    """A seed for torch, numpy and Python's random alike."""
    return whole(ctx, key, value, 0, SEED_MAX)


def steps(ctx: Where, key: str, value: Any) -> int:
    """A count of training steps."""
    return whole(ctx, key, value, 1, STEPS_MAX)


def every(ctx: Where, key: str, value: Any) -> int:
    """Instrument every K-th step (``1``: all of them; ``0``: none, plain training)."""
    return whole(ctx, key, value, 0, STEPS_MAX)


def sweep(ctx: Where, key: str, value: Any) -> int:
    """A count of linear-scalarization sweep points (``0``: no sweep)."""
    return whole(ctx, key, value, 0, SWEEP_MAX)


# YAML 1.1 (PyYAML) reads a float only with a dot: `1e-3`, `5e-4` and `1E+2` come back as
# strings. Numbers in a spec follow YAML 1.2 instead, in the loader and in the checks below
# (which also see values from Python callers and the command line).
_NUMBER = re.compile(r"^[-+]?(\.[0-9]+|[0-9][0-9_]*(\.[0-9_]*)?)([eE][-+]?[0-9]+)?$")


class _SpecLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that also reads exponent floats without a dot (YAML 1.2)."""


_SpecLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?[0-9][0-9_]*(\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def load_yaml(text: str) -> Any:
    """``yaml.safe_load`` with YAML 1.2 numbers (``1e-3`` is a float)."""
    return yaml.load(text, Loader=_SpecLoader)  # noqa: S506 - a SafeLoader subclass


def as_number(value: Any) -> Any:
    """``value`` as a float if it is a number or a string spelling one; else unchanged."""
    if isinstance(value, str) and _NUMBER.match(value.strip()):
        return float(value.strip().replace("_", ""))
    return value


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def number(
    ctx: Where, key: str, value: Any, *, minimum: float | None = None, positive: bool = False
) -> float:
    """A real number (``1e-3`` as text too); ``positive``: > 0; ``minimum``: >= it."""
    value = as_number(value)
    if not is_number(value) or value != value:  # NaN is no setting
        raise ctx.err(key, f"must be a number, not {value!r}.")
    if positive and not value > 0:
        raise ctx.err(key, f"must be a number > 0, not {value!r}.")
    if minimum is not None and value < minimum:
        raise ctx.err(key, f"must be a number >= {minimum}, not {value!r}.")
    return float(value)


def boolean(ctx: Where, key: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ctx.err(key, f"must be true or false, not {value!r}.")
    return value
