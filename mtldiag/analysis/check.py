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

import json
import math
import re
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from mtldiag.errors import MtldiagError, did_you_mean

PAIR_METRICS = {"conflict_rate": max, "cosine_mean": min, "gms_mean": min}  # how "worst" is
TASK_METRICS = ("final_loss", "metric")
RUN_SCALARS = {
    "grad_norm_ratio": "grad_norm_ratio",
    "step_time_ms": "step_time_ms_median",
    "peak_memory_mb": "peak_memory_mb",
}
COMPARE_METRICS = ("metric", "delta_m")
VALID_METRICS = (
    "conflict_rate[a,b]",
    "cosine_mean[a,b]",
    "gms_mean[a,b]",
    "(any of these)@layer",
    "final_loss[task]",
    "grad_norm_ratio",
    "step_time_ms",
    "peak_memory_mb",
    "metric[task]",
    "delta_m",
)
_NAMES = (*PAIR_METRICS, "final_loss", *RUN_SCALARS, "metric", "delta_m")
BOUNDS = ("min", "max", "max_increase", "max_decrease")
RELATIVE_BOUNDS = ("max_increase", "max_decrease")
_RULE_KEYS = ("metric", *BOUNDS, "method", "name")
_BASELINE_SKIP = ("single:", "sweep:")  # run labels that are baselines, not methods
_PATH = re.compile(r"^\s*(?P<name>\w+)\s*(?:\[(?P<args>[^\]]*)\])?\s*(?:@\s*(?P<layer>\S+))?\s*$")


class CheckError(MtldiagError):
    """A rule, a rules file, a run or a baseline that cannot be checked (exit code 2)."""


def _metrics_hint() -> str:
    return "valid metrics: " + ", ".join(VALID_METRICS)


@dataclass(frozen=True)
class MetricPath:
    """A parsed metric path such as ``conflict_rate[a,b]@trunk.0``.

    ``pair`` is ``None`` for a pair metric without ``[a,b]`` (the worst pair)."""

    name: str
    pair: tuple[str, str] | None = None
    task: str | None = None
    layer: str | None = None

    def __str__(self) -> str:
        text = self.name
        if self.pair:
            text += f"[{self.pair[0]},{self.pair[1]}]"
        if self.task:
            text += f"[{self.task}]"
        if self.layer:
            text += f"@{self.layer}"
        return text


@dataclass(frozen=True)
class Bound:
    """One limit of a rule: ``kind`` is min, max, max_increase or max_decrease."""

    kind: str
    value: float
    relative: bool = False  # a percentage of the baseline value (max_increase/max_decrease)

    def __str__(self) -> str:
        return f"{self.kind} {fmt_number(self.value)}{'%' if self.relative else ''}"

    @property
    def needs_baseline(self) -> bool:
        return self.kind in RELATIVE_BOUNDS


@dataclass(frozen=True)
class Rule:
    """A metric, its bounds and the method it applies to (``None``: the default method)."""

    index: int  # 1-based position in the rules list, used in error messages
    metric: MetricPath
    bounds: tuple[Bound, ...]
    method: str | None = None
    label: str | None = None  # the rule's ``name:``, if given

    @property
    def name(self) -> str:
        if self.label:
            return self.label
        text = f"{self.metric} " + ", ".join(str(b) for b in self.bounds)
        return f"{text} ({self.method})" if self.method else text

    @property
    def needs_baseline(self) -> bool:
        return any(b.needs_baseline for b in self.bounds)


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


def fmt_number(x: float | None) -> str:
    """Compact number for messages and tables (4 significant digits)."""
    if x is None:
        return "n/a"
    return f"{x:.4g}"


# --- parsing ---------------------------------------------------------------------------------


def parse_metric(text: Any, where: str = "rule") -> MetricPath:
    """Parse ``name``, ``name[a,b]``, ``name[task]`` and ``...@layer`` (no run needed)."""
    if not isinstance(text, str) or not text.strip():
        raise CheckError(
            f"{where}: 'metric' must be a metric path, not {text!r}.", hint=_metrics_hint()
        )
    m = _PATH.match(text)
    if not m:
        raise CheckError(f"{where}: cannot read metric '{text}'.", hint=_metrics_hint())
    name, args, layer = m["name"], m["args"], m["layer"]
    if name not in _NAMES:
        raise CheckError(
            f"{where}: unknown metric '{name}'.{did_you_mean(name, _NAMES)}", hint=_metrics_hint()
        )
    names = [a.strip() for a in args.split(",")] if args is not None else []
    if args is not None and (not names or any(not a for a in names)):
        raise CheckError(f"{where}: empty task name in '{text}'.", hint=_metrics_hint())
    if layer is not None and name not in PAIR_METRICS:
        raise CheckError(
            f"{where}: '@{layer}' applies only to conflict_rate, cosine_mean and "
            f"gms_mean, not to {name}.",
            hint=_metrics_hint(),
        )
    if name in PAIR_METRICS:
        if args is None:
            return MetricPath(name, layer=layer)
        if len(names) != 2 or names[0] == names[1]:
            raise CheckError(
                f"{where}: {name} takes a pair of two different tasks, like "
                f"{name}[a,b], not '{text}'."
            )
        return MetricPath(name, pair=(names[0], names[1]), layer=layer)
    if name in TASK_METRICS:
        if len(names) != 1:
            raise CheckError(f"{where}: {name} takes one task, like {name}[a], not '{text}'.")
        return MetricPath(name, task=names[0])
    if args is not None:
        raise CheckError(f"{where}: {name} takes no '[...]', not '{text}'.", hint=_metrics_hint())
    return MetricPath(name)


def _parse_bound(kind: str, raw: Any, where: str) -> Bound:
    hint = "use a number (0.1)" + (
        ", or a percentage of the baseline in quotes ('5%')"
        if kind in RELATIVE_BOUNDS
        else "; percentages are for max_increase/max_decrease"
    )
    value: float | None = None
    relative = False
    if isinstance(raw, (int, float)) and not isinstance(raw, bool):
        value = float(raw)
    elif isinstance(raw, str):
        s = raw.strip()
        if s.endswith("%") and kind in RELATIVE_BOUNDS:
            s, relative = s[:-1].strip(), True
        try:
            value = float(s)
        except ValueError:
            value = None
    if value is None or not math.isfinite(value):
        raise CheckError(f"{where}: malformed bound {kind}: {raw!r}.", hint=hint)
    return Bound(kind, value, relative)


def parse_rule(entry: Any, index: int, source: str = "rules") -> Rule:
    """Validate one rule mapping (``{metric: ..., max: ..., method: ...}``)."""
    where = f"{source}: rule {index}"
    if not isinstance(entry, dict):
        raise CheckError(
            f"{where} must be a mapping like {{metric: conflict_rate, max: 0.4}}, not {entry!r}."
        )
    for key in entry:
        if key not in _RULE_KEYS:
            raise CheckError(
                f"{where}: unknown key '{key}'.{did_you_mean(str(key), _RULE_KEYS)}",
                hint="valid keys: " + ", ".join(_RULE_KEYS),
            )
    if "metric" not in entry:
        raise CheckError(f"{where} has no 'metric'.", hint=_metrics_hint())
    metric = parse_metric(entry["metric"], where)
    where = f"{source}: rule {index} ({metric})"
    bounds = tuple(_parse_bound(k, entry[k], where) for k in BOUNDS if k in entry)
    if not bounds:
        raise CheckError(f"{where} has no bound.", hint="add one of: " + ", ".join(BOUNDS))
    method = entry.get("method")
    if method is not None and not isinstance(method, str):
        raise CheckError(f"{where}: 'method' must be a run label like pcgrad, not {method!r}.")
    label = entry.get("name")
    return Rule(index, metric, bounds, method, str(label) if label is not None else None)


def parse_rules(data: Any, source: str = "rules") -> tuple[Rule, ...]:
    """Rules from a list, or from a mapping with a ``checks:`` list (a spec is a rules file)."""
    if isinstance(data, dict):
        if "checks" not in data:
            raise CheckError(
                f"{source}: no 'checks:' list.",
                hint="a rules file is a YAML list of rules, or has a 'checks:' "
                "list; see sample_configs/rules.yaml",
            )
        data = data["checks"]
    if not isinstance(data, list) or not data:
        raise CheckError(
            f"{source}: no rules.",
            hint="write a list like '- {metric: conflict_rate, max: 0.4}'; see "
            "sample_configs/rules.yaml",
        )
    return tuple(parse_rule(e, i, source) for i, e in enumerate(data, start=1))


def load_rules(path: str | Path) -> tuple[Rule, ...]:
    """Read a YAML rules file."""
    path = Path(path)
    if not path.is_file():
        raise CheckError(f"rules file '{path}' does not exist.", hint="check the --rules path")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise CheckError(
            f"rules file '{path}' is not valid YAML: {str(exc).splitlines()[0]}."
        ) from None
    return parse_rules(data, str(path))


def _run_dir(path: Path) -> Path:
    return path.parent if path.is_file() else path


def rules_from_run(run: str | Path) -> tuple[Rule, ...]:
    """The ``checks:`` list of the run's resolved ``spec.yaml``."""
    spec = _run_dir(Path(run)) / "spec.yaml"
    hint = "pass --rules FILE, or add a 'checks:' list to the spec (see sample_configs/rules.yaml)"
    if not spec.is_file():
        raise CheckError(
            f"no rules: no --rules and no spec.yaml in '{_run_dir(Path(run))}'.", hint=hint
        )
    try:
        data = yaml.safe_load(spec.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError:
        raise CheckError(f"'{spec}' is not valid YAML.", hint=hint) from None
    if not isinstance(data, dict) or not data.get("checks"):
        raise CheckError(
            f"no rules: no --rules and the spec in '{spec}' has no 'checks:'.", hint=hint
        )
    return parse_rules(data["checks"], f"{spec} checks")


def load_summary(path: str | Path, role: str = "run") -> dict[str, Any]:
    """Read ``summary.json`` from a run directory (or the file itself)."""
    path = Path(path)
    if not path.exists():
        raise CheckError(
            f"{role} '{path}' does not exist.",
            hint="pass a run directory written by mtldiag profile or compare, or its summary.json",
        )
    file = path / "summary.json" if path.is_dir() else path
    if not file.is_file():
        raise CheckError(
            f"{role} directory '{path}' has no summary.json.",
            hint=f"`mtldiag report {path}` rebuilds it from steps.csv and pairs.csv",
        )
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckError(
            f"{role} summary '{file}' is not valid JSON ({exc}).",
            hint=f"`mtldiag report {_run_dir(file)}` rebuilds it",
        ) from None
    if not isinstance(data, dict) or not str(data.get("schema", "")).startswith("mtldiag.summary/"):
        raise CheckError(f"'{file}' is not an mtldiag summary (no 'schema: mtldiag.summary/...').")
    return data


# --- evaluation ------------------------------------------------------------------------------


def method_labels(summary: dict[str, Any]) -> list[str]:
    """Run labels in order of first appearance."""
    seen: dict[str, None] = {}
    for run in summary.get("runs") or []:
        seen.setdefault(str(run.get("method")), None)
    return list(seen)


def default_method(summary: dict[str, Any], role: str = "run") -> str:
    """The only method, or the first that is not a single-task or sweep baseline."""
    labels = method_labels(summary)
    if not labels:
        raise CheckError(f"the {role} summary has no runs.")
    methods = [x for x in labels if not x.startswith(_BASELINE_SKIP)]
    return (methods or labels)[0]


def _mean(values: Sequence[float | None]) -> float | None:
    vals = [float(v) for v in values if v is not None]
    vals = [v for v in vals if math.isfinite(v)]
    return statistics.fmean(vals) if vals else None


def _measure(
    summary: dict[str, Any], metric: MetricPath, method: str | None, role: str
) -> tuple[str, float | None, str]:
    """(method, value, detail) of one metric path in one summary; raises on bad input."""
    labels = method_labels(summary)
    if method is None:
        method = default_method(summary, role)
    elif method not in labels:
        raise CheckError(
            f"method '{method}' is not in the {role}.{did_you_mean(method, labels)}",
            hint="its run labels: " + (", ".join(labels) or "none"),
        )
    tasks = [str(t) for t in summary.get("tasks") or []]

    def need_task(t: str) -> None:
        if t not in tasks:
            raise CheckError(
                f"{metric}: task '{t}' is not in the {role}.{did_you_mean(t, tasks)}",
                hint="its tasks: " + ", ".join(tasks),
            )

    if metric.name in COMPARE_METRICS:
        return method, _compare_value(summary, metric, method, role, need_task), ""
    runs = [r for r in summary.get("runs") or [] if r.get("method") == method]
    ok = [r for r in runs if r.get("status") == "ok"]
    detail = "" if ok else f"no successful run of {method}"
    if metric.name in RUN_SCALARS:
        return method, _mean([r.get(RUN_SCALARS[metric.name]) for r in ok]), detail
    if metric.name == "final_loss":
        need_task(metric.task or "")
        return method, _mean([(r.get("final_loss") or {}).get(metric.task) for r in ok]), detail
    return (method, *_pair_value(summary, metric, ok, tasks, role, need_task, detail))


def _pair_value(
    summary: dict[str, Any],
    metric: MetricPath,
    ok: list[dict[str, Any]],
    tasks: list[str],
    role: str,
    need_task: Any,
    detail: str,
) -> tuple[float | None, str]:
    layers = [str(x) for x in summary.get("layers") or []]
    if metric.layer is not None and metric.layer not in layers:
        raise CheckError(
            f"{metric}: layer '{metric.layer}' is not a shared layer of the "
            f"{role}.{did_you_mean(metric.layer, layers)}",
            hint="its shared layers: " + (", ".join(layers) or "none"),
        )
    if len(tasks) < 2:
        raise CheckError(f"{metric}: the {role} has fewer than two tasks, so no task pairs.")
    if metric.pair is not None:
        for t in metric.pair:
            need_task(t)
        wanted = [metric.pair]
    else:
        wanted = [(a, b) for i, a in enumerate(tasks) for b in tasks[i + 1 :]]

    def value_of(run: dict[str, Any], a: str, b: str) -> float | None:
        for p in run.get("pairs") or []:
            if {p.get("a"), p.get("b")} == {a, b}:
                entry = p if metric.layer is None else (p.get("layers") or {}).get(metric.layer)
                return (entry or {}).get(metric.name)
        return None

    means = {pair: _mean([value_of(r, *pair) for r in ok]) for pair in wanted}
    if metric.pair is not None:
        return means[metric.pair], detail
    known = {pair: v for pair, v in means.items() if v is not None}
    if not known:
        return None, detail or "no pair has a value"
    worst = PAIR_METRICS[metric.name](known, key=lambda pair: known[pair])
    return known[worst], f"worst pair {worst[0]},{worst[1]}"


def _compare_value(
    summary: dict[str, Any], metric: MetricPath, method: str, role: str, need_task: Any
) -> float | None:
    comparison = summary.get("comparison")
    if not isinstance(comparison, dict):
        raise CheckError(
            f"{metric}: the {role} is not a compare run (its summary.json has no "
            "'comparison' section).",
            hint="metric[task] and delta_m need `mtldiag compare`",
        )
    rows = {r.get("label"): r for r in comparison.get("rows") or []}
    if method not in rows:
        return None  # every run of the method failed: the rule fails, with "n/a"
    row = rows[method]
    if metric.name == "delta_m":
        if comparison.get("reference") is None:
            raise CheckError(
                f"delta_m: the {role} has no reference for Δm%.",
                hint="compare with --single-task, or include ew in the methods",
            )
        return row.get("delta_m")
    need_task(metric.task or "")
    return ((row.get("metric") or {}).get(metric.task) or {}).get("mean")


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
    method, value, detail = _measure(summary, rule.metric, rule.method, "run")
    base = None
    if baseline is not None:
        _, base, _ = _measure(baseline, rule.metric, rule.method, "baseline")
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
