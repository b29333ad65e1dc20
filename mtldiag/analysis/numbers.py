"""Numbers for people: the one way the report, the terminal and the verdicts write them."""

from __future__ import annotations

import math
from typing import Any

DASH = "–"


def is_number(x: Any) -> bool:
    """A finite int or float (not a bool)."""
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def sig(x: Any, digits: int = 3, sign: bool = False) -> str:
    """``x`` to ``digits`` significant digits, never in e-notation (3512.4 → "3512", 0.0123 →
    "0.0123"); integers keep all their digits. ``sign`` writes "+" before positive numbers."""
    if not is_number(x):
        return DASH
    if x == 0:
        return "+0" if sign else "0"
    exponent = math.floor(math.log10(abs(x)))
    if abs(round(x, digits - 1 - exponent)) >= 10 ** (exponent + 1):
        exponent += 1  # 9.996 rounds up to 10.0: one decimal fewer
    decimals = max(0, digits - 1 - exponent)
    return f"{x:{'+' if sign else ''}.{decimals}f}"


def interval(ci: Any, digits: int = 3) -> str:
    """A 95 % interval ``[lo, hi]`` as "lo to hi" (a dash when there is none)."""
    if not isinstance(ci, (list, tuple)) or len(ci) != 2 or not all(map(is_number, ci)):
        return DASH
    return f"{sig(ci[0], digits)} to {sig(ci[1], digits)}"


def yes_no(x: Any) -> str:
    """A boolean as a word."""
    return "yes" if x is True else "no" if x is False else DASH


def rounded(obj: Any, digits: int = 3) -> Any:
    """``obj`` with every float at ``digits`` significant digits and every boolean a word:
    evidence as a person reads it (``0.123456789`` → ``0.123``, ``True`` → ``"yes"``)."""
    if isinstance(obj, bool):
        return yes_no(obj)
    if isinstance(obj, float):
        return float(sig(obj, digits)) if is_number(obj) else None
    if isinstance(obj, dict):
        return {k: rounded(v, digits) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [rounded(v, digits) for v in obj]
    return obj


def plain(x: Any, digits: int = 3) -> str:
    """``x`` to ``digits`` significant digits like ``:g`` (trailing zeros dropped), but never
    in e-notation: 3512.4 → "3512", not "3.51e+03"; 1e-5 → "0.0000100"."""
    if not is_number(x):
        return DASH
    text = f"{x:.{digits}g}"
    return sig(x, digits) if "e" in text else text
