"""The rules of ``mtldiag check``: metric paths, bounds and rules, parsed and validated before
any run is read. What a rule means is documented in :mod:`mtldiag.analysis.check`."""

from __future__ import annotations

import math
import re
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


def fmt_number(x: float | None) -> str:
    """Compact number for messages and tables (4 significant digits)."""
    if x is None:
        return "n/a"
    return f"{x:.4g}"


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
    if path.is_dir():
        raise CheckError(
            f"rules file '{path}' is a directory, not a YAML rules file.",
            hint="pass the file, e.g. --rules sample_configs/rules.yaml",
        )
    if not path.is_file():
        raise CheckError(f"rules file '{path}' does not exist.", hint="check the --rules path")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise CheckError(
            f"rules file '{path}' is not UTF-8 text (byte {exc.start}): is it the right file?",
            hint="a rules file is YAML, e.g. sample_configs/rules.yaml",
        ) from None
    except OSError as exc:
        raise CheckError(f"cannot read rules file '{path}': {exc.strerror}.") from None
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
    except (yaml.YAMLError, UnicodeDecodeError):
        raise CheckError(f"'{spec}' is not valid YAML.", hint=hint) from None
    if not isinstance(data, dict) or not data.get("checks"):
        raise CheckError(
            f"no rules: no --rules and the spec in '{spec}' has no 'checks:'.", hint=hint
        )
    return parse_rules(data["checks"], f"{spec} checks")
