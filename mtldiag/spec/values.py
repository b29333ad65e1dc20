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
        where = f"{self.source}: '{key}'" if key else self.source
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


def whole(ctx: Where, key: str, value: Any, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ctx.err(key, f"must be a whole number >= {minimum}, not {value!r}.")
    return value
