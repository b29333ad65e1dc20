"""CI regression checks: rules over a run's ``summary.json``, optionally against a baseline run.

A rule names a metric of ``summary.json`` and one or more bounds::

    - {metric: "conflict_rate[a,b]", max: 0.4}          # absolute ceiling
    - {metric: cosine_mean, min: -0.2}                  # worst pair (lowest mean cosine)
    - {metric: "final_loss[b]", max_increase: 5%}       # relative to the baseline run
    - {metric: step_time_ms, max_increase: 50%}         # timing: noisy, see below
    - {metric: delta_m, max: 0, method: pcgrad}         # compare runs only

Metric paths (values are means over the seeds of the selected method's ``ok`` runs):

* ``conflict_rate[a,b]``, ``cosine_mean[a,b]``, ``gms_mean[a,b]``: one task pair over all
  shared parameters; without ``[a,b]`` the worst pair (highest conflict rate, lowest mean
  cosine, lowest gradient-magnitude similarity). ``@layer`` restricts to one shared layer,
  e.g. ``conflict_rate[a,b]@trunk.0``.
* ``final_loss[task]``, ``grad_norm_ratio`` (largest over smallest mean task gradient norm),
  ``step_time_ms`` (median step time), ``peak_memory_mb``.
* compare runs: ``metric[task]`` (the evaluation metric's mean) and ``delta_m`` (Δm%,
  Maninis et al. 2019), read from ``summary["comparison"]["rows"]``.

``method:`` selects the run label (default: the only method, or the first one that is not a
``single:``/``sweep:`` baseline). Bounds: ``min`` and ``max`` are absolute; ``max_increase``
and ``max_decrease`` compare with the same metric of ``--baseline`` and take an absolute
amount (``0.05``) or a percentage of the baseline value (``"5%"``).

Timing and memory rules are noisy: step time depends on the machine, its load and the
thread count, and CI runners differ from one job to the next. Prefer a relative bound with
a generous tolerance against a baseline recorded on the same runner type
(``{metric: step_time_ms, max_increase: 50%}``) over an absolute ``max``.

The library never prints: :func:`run_check` returns a frozen :class:`CheckReport`; the
renderers in :mod:`mtldiag.report.check_output` turn it into JUnit XML, markdown or JSON.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mtldiag.analysis.measure import measure
from mtldiag.analysis.rules import (
    Bound,
    CheckError,
    Rule,
    fmt_number,
    load_rules,
    rules_from_run,
)
from mtldiag.rundir.load import SummaryError, read_summary


@dataclass(frozen=True)
class RuleResult:
    """The outcome of one rule: the numbers and, when it failed, why."""

    rule: Rule
    method: str
    value: float | None
    baseline: float | None
    limits: tuple[str, ...]  # each bound as a comparison, e.g. "<= 0.4", "<= 1.05 (base +5%)"
    failures: tuple[str, ...]  # one sentence per violated bound; empty when it passed
    detail: str = ""  # e.g. "worst pair a,b"

    @property
    def passed(self) -> bool:
        return not self.failures

    @property
    def name(self) -> str:
        return self.rule.name

    @property
    def limit(self) -> str:
        return "; ".join(self.limits)

    def to_dict(self) -> dict[str, Any]:
        return {
            "rule": self.name,
            "metric": str(self.rule.metric),
            "method": self.method,
            "detail": self.detail or None,
            "value": self.value,
            "baseline": self.baseline,
            "bounds": {
                b.kind: f"{fmt_number(b.value)}%" if b.relative else b.value
                for b in self.rule.bounds
            },
            "limit": self.limit,
            "passed": self.passed,
            "failures": list(self.failures),
        }


@dataclass(frozen=True)
class CheckReport:
    """Every rule's result for one run (and its baseline, if any)."""

    run: str
    name: str
    kind: str
    results: tuple[RuleResult, ...]
    baseline: str | None = None
    status: str = "complete"  # the run's summary status: complete | interrupted | failed

    @property
    def passed(self) -> bool:
        return all(r.passed for r in self.results)

    @property
    def n_failed(self) -> int:
        return sum(not r.passed for r in self.results)

    @property
    def exit_code(self) -> int:
        return 0 if self.passed else 1

    def headline(self) -> str:
        n = len(self.results)
        if self.passed:
            return f"all {n} rule{'s' if n != 1 else ''} passed"
        return f"{self.n_failed} of {n} rule{'s' if n != 1 else ''} failed"

    def to_dict(self) -> dict[str, Any]:
        return {
            "run": self.run,
            "name": self.name,
            "kind": self.kind,
            "baseline": self.baseline,
            "status": self.status,
            "passed": self.passed,
            "failed": self.n_failed,
            "results": [r.to_dict() for r in self.results],
        }


def load_summary(path: str | Path, role: str = "run") -> dict[str, Any]:
    """Read ``summary.json`` from a run directory (or the file itself) through the run reader;
    what is wrong with it becomes a :class:`CheckError` (exit code 2)."""
    path = Path(path)
    try:
        return dict(read_summary(path))
    except SummaryError as exc:
        raise _summary_error(exc, path, role) from None


def _summary_error(exc: SummaryError, path: Path, role: str) -> CheckError:
    if exc.reason == "missing":
        return CheckError(
            f"{role} '{path}' does not exist.",
            hint="pass a run directory written by mtldiag profile or compare, or its summary.json",
        )
    if exc.reason == "no_file":
        return CheckError(
            f"{role} directory '{path}' has no summary.json.",
            hint=f"`mtldiag report {path}` rebuilds it from steps.csv and pairs.csv",
        )
    if exc.reason == "invalid_json":
        return CheckError(
            f"{role} summary '{exc.file}' is not valid JSON ({exc.detail}).",
            hint=f"`mtldiag report {exc.file.parent}` rebuilds it",
        )
    if exc.reason == "wrong_types":
        return CheckError(
            f"{role} summary '{exc.file}' is damaged: {exc.detail}",
            hint=f"`mtldiag report {exc.file.parent} --rebuild` rebuilds it from the CSVs",
        )
    return CheckError(f"'{exc.file}' is not an mtldiag summary (no 'schema: mtldiag.summary/...').")


def _apply(bound: Bound, value: float | None, base: float | None) -> tuple[str, str | None]:
    """(limit text, failure sentence or None) of one bound."""
    if bound.kind in ("min", "max"):
        limit = bound.value
        text = f"{'>=' if bound.kind == 'min' else '<='} {fmt_number(limit)}"
    else:
        if base is None:
            sign = "+" if bound.kind == "max_increase" else "-"
            return f"baseline {sign}{bound}", f"{bound}: the baseline has no value"
        amount = abs(base) * bound.value / 100 if bound.relative else bound.value
        limit = base + amount if bound.kind == "max_increase" else base - amount
        sign = "+" if bound.kind == "max_increase" else "-"
        spec = f"{fmt_number(bound.value)}%" if bound.relative else fmt_number(bound.value)
        op = "<=" if bound.kind == "max_increase" else ">="
        text = f"{op} {fmt_number(limit)} (baseline {sign}{spec})"
    if value is None:
        return text, "no value"
    upper = bound.kind in ("max", "max_increase")
    if (value > limit) if upper else (value < limit):
        op = ">" if upper else "<"
        return text, f"{fmt_number(value)} {op} {fmt_number(limit)} ({bound})"
    return text, None


def evaluate_rule(
    rule: Rule, summary: dict[str, Any], baseline: dict[str, Any] | None = None
) -> RuleResult:
    """Measure one rule on a summary (and its baseline) and apply its bounds."""
    if rule.needs_baseline and baseline is None:
        kinds = ", ".join(b.kind for b in rule.bounds if b.needs_baseline)
        raise CheckError(
            f"rule {rule.index} ({rule.metric}) uses {kinds}, which needs a baseline.",
            hint="pass --baseline RUN_DIR (a run directory or its summary.json)",
        )
    method, value, detail = measure(summary, rule.metric, rule.method, "run")
    base = None
    if baseline is not None:
        _, base, _ = measure(baseline, rule.metric, rule.method, "baseline")
    limits, failures = [], []
    for bound in rule.bounds:
        text, failure = _apply(bound, value, base)
        limits.append(text)
        if failure:
            failures.append(f"{failure}; {detail}" if detail and value is None else failure)
    return RuleResult(rule, method, value, base, tuple(limits), tuple(failures), detail)


def check_tasks(summary: dict[str, Any], baseline: dict[str, Any]) -> None:
    """A baseline must have the same tasks as the run (order aside)."""
    run_t, base_t = list(summary.get("tasks") or []), list(baseline.get("tasks") or [])
    if set(run_t) != set(base_t):
        raise CheckError(
            f"the baseline's tasks ({', '.join(base_t)}) differ from the run's "
            f"({', '.join(run_t)}).",
            hint="compare against a baseline of the same problem",
        )


def evaluate(
    summary: dict[str, Any],
    rules: Sequence[Rule],
    baseline: dict[str, Any] | None = None,
    run: str = "",
    baseline_name: str | None = None,
) -> CheckReport:
    """Evaluate every rule. All input errors are raised before any result is returned."""
    if baseline is not None:
        check_tasks(summary, baseline)
    results = tuple(evaluate_rule(r, summary, baseline) for r in rules)
    name, kind = str(summary.get("name", "")), str(summary.get("kind", ""))
    return CheckReport(
        run=run,
        name=name,
        kind=kind,
        results=results,
        baseline=baseline_name,
        status=str(summary.get("status") or "complete"),
    )


def run_check(
    run: str | Path,
    rules: str | Path | Sequence[Rule] | None = None,
    baseline: str | Path | None = None,
) -> CheckReport:
    """Check a run directory (or summary.json) against rules (a file, parsed rules, or the
    run's spec ``checks:`` when ``None``) and an optional baseline run."""
    summary = load_summary(run, "run")
    base = load_summary(baseline, "baseline") if baseline is not None else None
    if rules is None:
        parsed = rules_from_run(run)
    elif isinstance(rules, (str, Path)):
        parsed = load_rules(rules)
    else:
        parsed = tuple(rules)
    return evaluate(
        summary,
        parsed,
        base,
        run=str(run),
        baseline_name=str(baseline) if baseline is not None else None,
    )
