"""The ``--preview`` table and the runs' warnings in report.html, report.md and the terminal.

Hand-made summaries (no training): the cells, the escaping of user names, one line per warning.
"""

from __future__ import annotations

import copy

from rich.console import Console

from mtldiag.cli.render import render_summary
from mtldiag.report import tables
from mtldiag.report.content import build_content
from mtldiag.report.html import render_html
from mtldiag.report.markdown import render_markdown

from .test_tables import SUMMARY

TASKS = ["<i>t</i>", "x|y"]  # HTML in one name, a Markdown cell separator in the other


def preview_summary() -> dict:
    s = copy.deepcopy(SUMMARY)
    s["tasks"] = TASKS
    s["runs"] = [{"method": "ew", "seed": 0, "status": "ok", "pairs": []}]
    s["preview"] = {
        "steps": 8,
        "tasks": TASKS,
        "methods": [
            {
                "method": "ew",
                "steps": 8,
                "all_decrease_rate": 0.125,
                "gain_mean": {TASKS[0]: 2.5, TASKS[1]: -0.75},
                "angle_to_sum_mean": 0.0,
            },
            {
                "method": "cagrad:c=0.9",
                "steps": 8,
                "all_decrease_rate": 1.0,
                "gain_mean": {TASKS[0]: 0.123456, TASKS[1]: None},
                "angle_to_sum_mean": None,
            },
        ],
    }
    return s


def test_preview_cells_follow_the_summary_rows():
    data = tables.preview_data(preview_summary())
    assert data is not None
    assert data.title == "Preview on the 8 steps with a Jacobian (first order, no training)"
    assert data.headers == ["method", "all ↓", "gain <i>t</i>", "gain x|y", "angle"]
    assert data.rows == [
        ["ew", "12%", "2.5", "-0.75", "0.0°"],  # 12.5% rounds half to even
        ["cagrad:c=0.9", "100%", "0.123", tables.DASH, tables.DASH],
    ]
    assert tables.preview_data({**SUMMARY, "preview": None}) is None


def test_preview_section_in_html_escapes_task_names():
    page = render_html(build_content(preview_summary(), [], []))
    assert "<h2>Preview: what each gradient method would do on these steps</h2>" in page
    assert "<th>gain &lt;i&gt;t&lt;/i&gt;</th>" in page and "<i>t</i>" not in page
    assert "<td>cagrad:c=0.9</td>" in page and "on the 8 steps of this run" in page
    # after the one-run tables, before the runs
    assert page.index("Task pairs") < page.index("Preview:") < page.index("<h2>Runs</h2>")


def test_preview_section_in_markdown_keeps_the_table_whole():
    md = render_markdown(build_content(preview_summary(), [], [])).splitlines()
    i = md.index("## Preview: what each gradient method would do on these steps")
    header, rule, ew = md[i + 2], md[i + 3], md[i + 4]
    assert header == "| method | all ↓ | gain \\<i\\>t\\</i\\> | gain x\\|y | angle |"
    assert rule == "|---|---:|---:|---:|---:|"
    assert ew == "| ew | 12% | 2.5 | -0.75 | 0.0° |"


def warned_summary(kind: str = "profile") -> dict:
    s = copy.deepcopy(SUMMARY)
    s["kind"] = kind
    run = s["runs"][0]
    run["method"] = "nash_mtl"
    run["warnings"] = ["nash_mtl: <b>solve</b> failed on 3 of 8 steps [bold]x[/bold]"]
    other = {**copy.deepcopy(run), "seed": 1, "warnings": []}
    s["runs"] = [run, other]
    return s


def test_warnings_sit_next_to_the_run_status_in_html_and_markdown():
    content = build_content(warned_summary(), [], [])
    page = render_html(content)
    assert "<b>solve</b>" not in page
    escaped = "nash_mtl: &lt;b&gt;solve&lt;/b&gt; failed on 3 of 8 steps [bold]x[/bold]"
    assert f'<div class="banner warn"><b>Warning:</b> {escaped}</div>' in page
    runs = next(t for t in content.tables if t.title == "Runs")
    assert runs.headers[:5] == ["method", "seed", "status", "warnings", "steps"]
    assert runs.rows[0][2:4] == ["ok", warned_summary()["runs"][0]["warnings"][0]]
    assert runs.rows[1][2:4] == ["ok", ""] and runs.marked == {0}
    assert f"<td>ok</td><td>{escaped}</td>" in page
    md = render_markdown(content)
    assert "> **Warning:** nash\\_mtl: \\<b\\>solve\\</b\\> failed" in md
    # no warnings: no column
    plain = copy.deepcopy(SUMMARY)
    assert "warnings" not in tables.runs_data(plain).headers


def terminal(summary: dict) -> str:
    console = Console(width=200, record=True, color_system=None)
    render_summary(console, summary)
    return console.export_text()


def test_terminal_prints_each_warning_once_as_text():
    out = terminal(warned_summary())
    line = "warning: nash_mtl: <b>solve</b> failed on 3 of 8 steps [bold]x[/bold]"
    assert out.count("warning:") == 1 and line in out.splitlines()
    # in a comparison each line names its run
    out = terminal(warned_summary("compare"))
    assert "warning: nash_mtl seed 0: nash_mtl: <b>solve</b>" in out
    assert out.count("warning:") == 1


def test_terminal_warning_is_yellow():
    console = Console(width=200, record=True, color_system="standard", force_terminal=True)
    render_summary(console, warned_summary())
    ansi = console.export_text(styles=True)
    assert "\x1b[33mwarning:\x1b[0m" in ansi


def test_terminal_preview_table_once_after_the_diagnosis():
    s = preview_summary()
    s["diagnosis"] = [
        {
            "code": "no_issue",
            "severity": "info",
            "message": "all fine",
            "suggestion": "keep ew",
            "evidence": {},
        }
    ]
    out = terminal(s)
    assert out.count("Preview on the 8 steps with a Jacobian") == 1
    assert out.index("all fine") < out.index("Preview on the 8")
    assert "gain <i>t</i>" in out and "cagrad:c=0.9" in out  # names shown as text
