"""Renderers for a :class:`~mtldiag.analysis.check.CheckReport`: JUnit XML, markdown and JSON.

Each returns a string and never prints or writes; the CLI decides where it goes.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

from mtldiag.analysis.check import CheckReport, RuleResult
from mtldiag.analysis.rules import fmt_number
from mtldiag.report.markdown import md_escape

JUNIT_CLASSNAME = "mtldiag.check"


def _rule_detail(r: RuleResult) -> str:
    parts = [f"method {r.method}"]
    if r.rule.label:
        parts.append(f"metric {r.rule.metric}")
    if r.detail:
        parts.append(r.detail)
    return ", ".join(parts)


def render_json(report: CheckReport) -> str:
    """The report as indented JSON (``null`` for missing values)."""
    return json.dumps(report.to_dict(), indent=2)


def render_junit(report: CheckReport) -> str:
    """JUnit XML: one ``<testsuite>`` in ``<testsuites>``, one ``<testcase>`` per rule.

    The layout is the common denominator that Jenkins (junit plugin), GitLab
    (``artifacts:reports:junit``) and GitHub test-report actions read: counts on both
    ``testsuites`` and ``testsuite``, ``failure`` elements with a short ``message`` attribute
    and the numbers in their text.
    """
    n, failed = len(report.results), report.n_failed
    counts = {"tests": str(n), "failures": str(failed), "errors": "0", "skipped": "0", "time": "0"}
    suite_name = f"mtldiag check {report.name}".strip()
    root = ET.Element("testsuites", {"name": "mtldiag check", **counts})
    suite = ET.SubElement(root, "testsuite", {"name": suite_name, **counts})
    props = ET.SubElement(suite, "properties")
    ET.SubElement(props, "property", {"name": "run", "value": report.run})
    if report.baseline is not None:
        ET.SubElement(props, "property", {"name": "baseline", "value": report.baseline})
    for r in report.results:
        attrs = {"classname": JUNIT_CLASSNAME, "name": r.name, "time": "0"}
        case = ET.SubElement(suite, "testcase", attrs)
        numbers = (
            f"value {fmt_number(r.value)}, baseline {fmt_number(r.baseline)}, "
            f"limit {r.limit} ({_rule_detail(r)})"
        )
        if r.passed:
            ET.SubElement(case, "system-out").text = numbers
        else:
            attrs = {"message": "; ".join(r.failures), "type": "RegressionCheck"}
            failure = ET.SubElement(case, "failure", attrs)
            failure.text = numbers
    ET.indent(root)
    return ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n"


def _cell(text: str) -> str:
    """Our own text (limits, failures) in a table cell: only ``|`` needs escaping."""
    return text.replace("|", "\\|").replace("\n", " ")


def _code(text: str) -> str:
    """Text for a code span in a table cell: no backtick to close it early, ``|`` escaped."""
    return text.replace("`", "'").replace("|", "\\|").replace("\n", " ")


def render_markdown(report: CheckReport) -> str:
    """A markdown section (heading, one table row per rule) for a pull-request comment."""
    status = "✅ passed" if report.passed else "❌ failed"
    lines = [f"### mtldiag check: {status} — {report.headline()}", ""]
    where = f"Run `{_code(report.run)}`" + (f" ({md_escape(report.name)})" if report.name else "")
    if report.baseline is not None:
        where += f" against baseline `{_code(report.baseline)}`"
    lines += [where + ".", ""]
    if report.status != "complete":
        lines += [
            f"> The run's status is **{report.status}**: its numbers cover only the "
            "steps it recorded.",
            "",
        ]
    lines += [
        "| rule | method | value | baseline | limit | result |",
        "|---|---|---:|---:|---|---|",
    ]
    for r in report.results:
        rule = f"`{_code(r.name)}`" + (f" ({md_escape(r.detail)})" if r.detail else "")
        result = "✅ PASS" if r.passed else "❌ FAIL: " + _cell("; ".join(r.failures))
        numbers = f"{fmt_number(r.value)} | {fmt_number(r.baseline)}"
        lines.append(
            f"| {rule} | {md_escape(r.method)} | {numbers} | {_cell(r.limit)} | {result} |"
        )
    return "\n".join(lines) + "\n"
