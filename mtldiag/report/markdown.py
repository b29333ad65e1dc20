"""``report.md``: the report as Markdown, tables inline, plots linked from ``plots/``.

User-given names are escaped (:func:`md_escape`): a ``|`` cannot break a table, ``<tag>`` stays
text, and a task named ``[click](https://evil.example)`` is not a link.
"""

from __future__ import annotations

import re
from typing import Any

from mtldiag.report.cells import TableData
from mtldiag.report.content import ReportContent

# Every character that starts Markdown syntax inside a line: links and images ([]), emphasis
# (*_~), code (`), HTML (<>), table cells (|). CommonMark reads a backslash before any ASCII
# punctuation as the character itself. ("#" and "-" matter only at a line's start, where no
# user string is put.)
_ESCAPES = {c: "\\" + c for c in "\\`*_~[]<>|"} | {"\n": " ", "\r": " "}
# GitHub also links bare URLs ("https://x", "www.x"), escapes or not: a zero-width space
# after the scheme's colon or after "www" keeps the text and stops the link.
_AUTOLINK = re.compile(r"(?i)\b((?:https?|ftp|mailto):)(?=/)|\b(www)(?=\.)")


def md_escape(value: Any) -> str:
    """``value`` as Markdown text that renders as itself: no link, emphasis, code or tag."""
    text = _AUTOLINK.sub(lambda m: (m.group(1) or m.group(2)) + "\u200b", str(value))
    return "".join(_ESCAPES.get(c, c) for c in text)


def md_table(data: TableData, level: str = "##") -> str:
    lines = [f"{level} {md_escape(data.title)}", ""]
    lines.append("| " + " | ".join(md_escape(h) for h in data.headers) + " |")
    lines.append("|" + "|".join("---:" if a == "r" else "---" for a in data.align) + "|")
    for i, row in enumerate(data.rows):
        cells = [md_escape(c) for c in row]
        if i in data.marked and cells:
            cells[0] = f"**{cells[0]}**"
        lines.append("| " + " | ".join(cells) + " |")
    if data.notes:
        lines.append("")
        lines += [f"_{md_escape(n)}_  " for n in data.notes]
    return "\n".join(lines) + "\n"


def render_markdown(content: ReportContent) -> str:
    """The whole report as a Markdown string."""
    out = [f"# {md_escape(content.title)}", ""]
    out += [f"- **{md_escape(k)}**: {md_escape(v)}" for k, v in content.facts]
    out.append("")
    if content.status not in ("complete", "None"):
        out += [
            f"> **This run is {md_escape(content.status)}**: the numbers cover the steps "
            "that were recorded.",
            "",
        ]
    out += [f"> **Warning:** {md_escape(w)}\n" for w in content.run_warnings]
    out += [f"> {md_escape(w)}\n" for w in content.warnings]
    if content.verdict:
        out += [f"**Verdict:** {md_escape(content.verdict)}", ""]
    tables = list(content.tables)
    if tables and tables[0].title.startswith("Comparison"):
        out.append(md_table(tables.pop(0)))
    if content.diagnosis:
        out += ["## Diagnosis", ""]
        for f in content.diagnosis:
            out.append(
                f"- **{md_escape(str(f.get('severity', '')).upper())}** "
                f"{md_escape(f.get('message', ''))}  \n"
                f"  → {md_escape(f.get('suggestion', ''))}"
            )
        out.append("")
    out += [md_table(t) for t in tables if t.title != "Runs"]
    if content.plots:
        out += ["## Plots", ""]
        for p in content.plots:
            alt = md_escape(p.title)
            out += [
                f"### {md_escape(p.title)}",
                "",
                f"![{alt}](plots/{p.path.name})",
                "",
                md_escape(p.caption),
                "",
            ]
    out += [md_table(t) for t in tables if t.title == "Runs"]
    return "\n".join(out).rstrip() + "\n"
