"""``report.html``: one self-contained page (inline CSS, plots as base64 PNG data URIs).

Nothing is fetched: no scripts, no stylesheets, no fonts, no remote images. Every name that
comes from the user (task, method, layer, spec name) goes through :func:`html.escape`.
"""

from __future__ import annotations

import base64
import html
import json
from typing import Any

from mtldiag.analysis.numbers import rounded
from mtldiag.report.cells import TableData
from mtldiag.report.content import ReportContent

CSS = """
body{font-family:-apple-system,"Segoe UI",Helvetica,Arial,sans-serif;margin:0;color:#1d1d1f;
background:#fafafa;line-height:1.45}
main{max-width:1180px;margin:0 auto;padding:24px 28px 60px}
h1{font-size:1.55em;margin:0 0 .4em}h2{font-size:1.2em;margin:1.8em 0 .5em;
border-bottom:1px solid #ddd;padding-bottom:.2em}
dl.facts{display:grid;grid-template-columns:max-content 1fr;gap:2px 14px;margin:0;
font-size:.92em}dl.facts dt{color:#666}dl.facts dd{margin:0}
.banner{padding:10px 14px;border-radius:6px;margin:14px 0}
.banner.warn{background:#fff4d6;border:1px solid #f0c36d}
.banner.ok{background:#e8f6ec;border:1px solid #8ccf9f}
table{border-collapse:collapse;margin:6px 0;font-size:.88em;background:#fff}
th,td{border:1px solid #ddd;padding:4px 9px;vertical-align:top}
th{background:#f0f0f3;text-align:left}td.r{text-align:right;font-variant-numeric:tabular-nums;
white-space:nowrap}tr.marked td{background:#fff7e0}
.note{color:#666;font-size:.85em;margin:2px 0}
.finding{background:#fff;border:1px solid #ddd;border-left:5px solid #999;border-radius:4px;
padding:8px 12px;margin:8px 0}.finding.critical{border-left-color:#c62828}
.finding.warning{border-left-color:#e0a800}.finding.info{border-left-color:#1e88e5}
.sev{font-weight:bold;text-transform:uppercase;font-size:.8em;margin-right:6px}
.sug{color:#333;margin-top:3px}.evidence{color:#777;font-size:.8em;font-family:monospace;
word-break:break-all}
figure{background:#fff;border:1px solid #ddd;border-radius:6px;padding:10px;margin:14px 0}
figure img{max-width:100%;height:auto;display:block;margin:0 auto}
figcaption{color:#555;font-size:.88em;margin-top:6px}
footer{color:#888;font-size:.8em;margin-top:40px}
"""


def esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _table(data: TableData) -> str:
    head = "".join(f"<th>{esc(h)}</th>" for h in data.headers)
    body = []
    for i, row in enumerate(data.rows):
        cells = "".join(
            f'<td class="r">{esc(c)}</td>' if al == "r" else f"<td>{esc(c)}</td>"
            for c, al in zip(row, data.align, strict=True)
        )
        cls = ' class="marked"' if i in data.marked else ""
        body.append(f"<tr{cls}>{cells}</tr>")
    notes = "".join(f'<p class="note">{esc(n)}</p>' for n in data.notes)
    return (
        f"<section><h2>{esc(data.title)}</h2><table><thead><tr>{head}</tr></thead>"
        f"<tbody>{''.join(body)}</tbody></table>{notes}</section>"
    )


def _finding(f: dict[str, Any]) -> str:
    sev = str(f.get("severity", "info"))
    cls = sev if sev in ("critical", "warning", "info") else "info"
    evidence = json.dumps(rounded(f.get("evidence") or {}), ensure_ascii=False, default=str)
    return (
        f'<div class="finding {cls}"><span class="sev">{esc(sev)}</span>'
        f"{esc(f.get('message', ''))}"
        f'<div class="sug">→ {esc(f.get("suggestion", ""))}</div>'
        f'<div class="evidence">{esc(f.get("code", ""))}: {esc(evidence)}</div></div>'
    )


def render_html(content: ReportContent) -> str:
    """The whole page as one string."""
    parts = [f"<h1>{esc(content.title)}</h1>", '<dl class="facts">']
    parts += [f"<dt>{esc(k)}</dt><dd>{esc(v)}</dd>" for k, v in content.facts]
    parts.append("</dl>")
    if content.status not in ("complete", "None"):
        parts.append(
            f'<div class="banner warn">This run is <b>{esc(content.status)}</b>: the '
            "numbers cover the steps that were recorded.</div>"
        )
    for w in content.run_warnings:
        parts.append(f'<div class="banner warn"><b>Warning:</b> {esc(w)}</div>')
    for w in content.warnings:
        parts.append(f'<div class="banner warn">{esc(w)}</div>')
    if content.verdict:
        parts.append(f'<div class="banner ok"><b>Verdict:</b> {esc(content.verdict)}</div>')
    tables = list(content.tables)
    if tables and tables[0].title.startswith("Comparison"):
        parts.append(_table(tables.pop(0)))
    if content.diagnosis:
        parts.append("<section><h2>Diagnosis</h2>")
        parts += [_finding(f) for f in content.diagnosis]
        parts.append("</section>")
    parts += [_table(t) for t in tables if t.title != "Runs"]
    if content.plots:
        parts.append("<section><h2>Plots</h2>")
        for p in content.plots:
            data = base64.b64encode(p.path.read_bytes()).decode("ascii")
            parts.append(
                f'<figure id="{esc(p.name)}"><img alt="{esc(p.title)}" '
                f'src="data:image/png;base64,{data}"><figcaption><b>{esc(p.title)}.</b> '
                f"{esc(p.caption)}</figcaption></figure>"
            )
        parts.append("</section>")
    parts += [_table(t) for t in tables if t.title == "Runs"]
    parts.append(
        "<footer>Written by mtldiag from summary.json, steps.csv and pairs.csv in this "
        "folder; <code>mtldiag report DIR</code> rebuilds it.</footer>"
    )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{esc(content.title)}</title><style>{CSS}</style></head>"
        f"<body><main>{''.join(parts)}</main></body></html>\n"
    )
