"""Where a value sits in the spec, for messages, and the checks values share.

Every error names the file and the key (``spec.yaml: 'profile.steps': ...``) and, where one
exists, the fix; unknown keys suggest the closest valid one.
"""

from __future__ import annotations

from typing import Any

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


def whole(ctx: Where, key: str, value: Any, minimum: int = 0, maximum: int | None = None) -> int:
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
    """Instrument every K-th step: K >= 1 (``every: 1`` instruments them all)."""
    return whole(ctx, key, value, 1, STEPS_MAX)
