"""Text cells of the report's tables: :class:`TableData` and how numbers are written in it."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

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
    return f"{x:.{digits}g}" if is_number(x) else DASH


def ratio(x: Any) -> str:
    return f"{x:.1f}×" if is_number(x) else DASH


def pct(x: Any) -> str:
    return f"{100 * x:.0f}%" if is_number(x) else DASH


def signed(x: Any) -> str:
    return f"{x:+.2f}" if is_number(x) else DASH


def mean_std(cell: Any, seeds: int = 2, std_digits: int = 2, sep: str = " ± ") -> str:
    if not isinstance(cell, dict) or not is_number(cell.get("mean")):
        return DASH
    if seeds > 1 and is_number(cell.get("std")):
        return f"{cell['mean']:.4g}{sep}{cell['std']:.{std_digits}g}"
    return f"{cell['mean']:.4g}"
