"""Text cells of the report's tables: :class:`TableData` and how numbers are written in it."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from mtldiag.analysis.numbers import plain

DASH = "–"


@dataclass
class TableData:
    """A table as text: ``align`` is ``"l"`` or ``"r"`` per column; ``marked`` rows stand out."""

    title: str
    headers: list[str]
    rows: list[list[str]]
    align: list[str]
    notes: list[str] = field(default_factory=list)
    marked: set[int] = field(default_factory=set)


# -- number formatting ---------------------------------------------------------------------


def is_number(x: Any) -> bool:
    """A finite int or float (not a bool): a value a cell can show."""
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def num(x: Any, digits: int = 4) -> str:
    """``digits`` significant digits, never e-notation (a step of 3512 ms is "3512")."""
    return plain(x, digits)


def ratio(x: Any) -> str:
    return f"{x:.1f}×" if is_number(x) else DASH


def pct(x: Any) -> str:
    return f"{100 * x:.0f}%" if is_number(x) else DASH


def count(x: Any) -> str:
    """A whole number with thousands separators ("1,024")."""
    return f"{int(x):,}" if is_number(x) else DASH


def pct_interval(ci: Any) -> str:
    """A rate's interval ``[lo, hi]`` as "15–85%"."""
    if not isinstance(ci, (list, tuple)) or len(ci) != 2 or not all(map(is_number, ci)):
        return DASH
    return f"{100 * ci[0]:.0f}–{100 * ci[1]:.0f}%"


def signed(x: Any) -> str:
    return f"{x:+.2f}" if is_number(x) else DASH


def mean_std(cell: Any, seeds: int = 2, std_digits: int = 2, sep: str = " ± ") -> str:
    if not isinstance(cell, dict) or not is_number(cell.get("mean")):
        return DASH
    if seeds > 1 and is_number(cell.get("std")):
        return f"{plain(cell['mean'])}{sep}{plain(cell['std'], std_digits)}"
    return plain(cell["mean"])
