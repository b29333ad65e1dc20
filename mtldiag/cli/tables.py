"""The report's tables as Rich renderables for the terminal (all Rich table code lives here).

The cells come from :mod:`mtldiag.report.tables` (plain text, the same cells report.html and
report.md show); every cell is a :class:`~rich.text.Text`, so user names are never markup.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from rich import box
from rich.console import Console, Group, RenderableType
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

from mtldiag.report.cells import TableData
from mtldiag.report.comparison import comparison_data, verdict
from mtldiag.report.tables import layer_data, pair_data, preview_data, task_data


def to_rich(data: TableData, keep: tuple[int, ...] = (0,)) -> Table:
    """A Rich table; every cell is plain :class:`Text`, so names are never read as markup.

    Columns in ``keep`` (the names) never wrap or get cut; numbers wrap at their spaces.
    """
    table = Table(
        title=Text(data.title, style="bold"),
        title_justify="left",
        caption="\n".join(data.notes) or None,
        caption_justify="left",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        collapse_padding=True,
    )
    for k, (head, al) in enumerate(zip(data.headers, data.align, strict=True)):
        table.add_column(
            Text(head), justify="right" if al == "r" else "left", no_wrap=k in keep, overflow="fold"
        )
    for i, row in enumerate(data.rows):
        table.add_row(*(Text(c) for c in row), style="yellow" if i in data.marked else None)
    return table


def _width(console: Console, table: Table) -> int:
    return Measurement.get(console, console.options.update_width(10_000), table).maximum


def abbreviate(data: TableData, keep: tuple[int, ...], budget: int) -> TableData:
    """``data`` with the names in columns ``keep`` longer than ``budget`` shortened to a unique
    prefix and an index (``semantic_se…1``), and a legend line for each in the notes."""
    aliases: dict[str, str] = {}
    for row in data.rows:
        for k in keep:
            name = row[k]
            if len(name) > budget and name not in aliases:
                tag = str(len(aliases) + 1)
                aliases[name] = name[: max(1, budget - 1 - len(tag))] + "…" + tag
    if not aliases:
        return data
    rows = [[aliases.get(c, c) if k in keep else c for k, c in enumerate(r)] for r in data.rows]
    legend = [f"{short} = {name}" for name, short in aliases.items()]
    return replace(data, rows=rows, notes=[*data.notes, *legend])


def fitted(data: TableData, keep: tuple[int, ...] = (0,), console: Console | None = None) -> Table:
    """:func:`to_rich`, with long names abbreviated (and a legend) until the table fits the
    console's width; numbers then keep whole columns instead of wrapping letter by letter."""
    table = to_rich(data, keep)
    if console is None:
        return table
    for budget in (24, 16, 12, 8):
        if _width(console, table) <= console.width:
            break
        table = to_rich(abbreviate(data, keep, budget), keep)
    return table


def task_table(summary: dict[str, Any], console: Console | None = None) -> Table:
    return fitted(task_data(summary), console=console)


def pair_table(summary: dict[str, Any], console: Console | None = None) -> Table:
    return fitted(pair_data(summary), keep=(0, 1), console=console)


def layer_table(summary: dict[str, Any], top: int = 5, console: Console | None = None) -> Table:
    return fitted(layer_data(summary, top=top), keep=(0, 3), console=console)  # layer, worst pair


def preview_table(summary: dict[str, Any], console: Console | None = None) -> Table | None:
    """The ``--preview`` table as the terminal shows it (``None`` without a preview)."""
    data = preview_data(summary)
    return None if data is None else fitted(data, console=console)


def comparison_table_rich(
    summary: dict[str, Any], console: Console | None = None
) -> RenderableType:
    """The ranked comparison table followed by the verdict.

    Given the ``console``, the most detailed layout that fits its width is chosen.
    """
    table: Table | None = None
    for level in (1, 2, 3):
        data = comparison_data(summary, level=level)
        if data is None:
            return Text("")
        names = (0, 1) if level < 3 else (0,)
        table = to_rich(data, keep=names) if level < 3 else fitted(data, names, console)
        if console is None:
            break
        wide = console.options.update_width(10_000)  # measure unclamped
        if Measurement.get(console, wide, table).maximum <= console.width:
            break
    assert table is not None
    parts: list[RenderableType] = [table]
    text = verdict(summary)
    if text:
        parts.append(Text.assemble(("Verdict: ", "bold green"), text))
    return Group(*parts)
