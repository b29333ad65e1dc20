"""Rules that turn a run's metrics into findings a person can act on.

Each finding has a ``code``, a ``severity`` (``info`` | ``warning`` | ``critical``), a
``message``, a ``suggestion`` and the ``evidence`` numbers it rests on. Thresholds:

=========================  ==============================================================
loss_scale_imbalance        largest / smallest task loss >= 10 (critical >= 100), at the
                            start (mean of the first steps) or on average, whichever is larger
grad_norm_dominance         largest / smallest mean gradient norm on shared params >= 5
                            (critical >= 20)
directional_conflict        a pair with conflict rate >= 0.3 whose conflicting steps have a
                            mean cosine <= -0.1, or a mean cosine <= -0.05 overall
                            (critical: conflict rate >= 0.6)
near_orthogonal             a pair that flips sign often (conflict rate >= 0.3) but only
                            with |cosine| < 0.1: the tasks barely interact; not a conflict
conflict_location           the shared layers with the highest conflict rate; when the
                            most conflicted layers sit in the deepest third of the shared
                            trunk, branching earlier is suggested
no_issue                    none of the above
=========================  ==============================================================
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from mtldiag.analysis.layers import rank_layers

LOSS_RATIO_WARN = 10.0
LOSS_RATIO_CRIT = 100.0
NORM_RATIO_WARN = 5.0
NORM_RATIO_CRIT = 20.0
CONFLICT_WARN = 0.3
CONFLICT_CRIT = 0.6
WEAK_COSINE = 0.1  # |cos| below this on conflicting steps: sign noise, not a tug of war
MEAN_COSINE_CONFLICT = -0.05
TOP_LAYERS = 3


def _finding(
    code: str, severity: str, message: str, suggestion: str, **evidence: Any
) -> dict[str, Any]:
    return {
        "code": code,
        "severity": severity,
        "message": message,
        "suggestion": suggestion,
        "evidence": evidence,
    }


def diagnose(run: dict[str, Any], layers: Sequence[str]) -> list[dict[str, Any]]:
    """Findings for one run entry of ``summary.json`` (``layers`` input side first)."""
    out: list[dict[str, Any]] = []
    out += _loss_scale(run)
    out += _norm_dominance(run)
    pairs = _conflicts(run)
    out += pairs
    conflicts = [f for f in pairs if f["code"] == "directional_conflict"]
    if conflicts:
        out += _location(run, layers)
    if not any(f["severity"] != "info" for f in out):
        out.append(
            _finding(
                "no_issue",
                "info",
                "No loss-scale imbalance, gradient dominance or frequent conflict was seen.",
                "Equal weighting is a sound choice here; `mtldiag compare` can confirm it.",
            )
        )
    return out


def _ratio(losses: dict[str, Any] | None) -> tuple[str, str, float, dict[str, float]] | None:
    """(largest task, smallest task, their ratio, the positive losses) or None."""
    vals = {t: v for t, v in (losses or {}).items() if v is not None and v > 0}
    if len(vals) < 2:
        return None
    big = max(vals, key=vals.__getitem__)
    small = min(vals, key=vals.__getitem__)
    return big, small, vals[big] / vals[small], vals


def _loss_scale(run: dict[str, Any]) -> list[dict[str, Any]]:
    # The scale at the start is what a weighting must undo (the seed documents' "100x"); the
    # mean over the run shrinks as the large loss falls, so the larger of the two is judged.
    mean = _ratio(run.get("loss_mean"))
    start = _ratio(run.get("initial_loss"))
    if mean is None:
        return []
    use_start = start is not None and start[2] > mean[2]
    big, small, ratio, vals = start if use_start else mean  # type: ignore[misc]
    if ratio < LOSS_RATIO_WARN:
        return []
    severity = "critical" if ratio >= LOSS_RATIO_CRIT else "warning"
    if use_start:
        when = f"at the start ({vals[big]:.3g} vs {vals[small]:.3g}; {mean[2]:.0f}x on average)"
    else:
        when = f"({vals[big]:.3g} vs {vals[small]:.3g} on average)"
    return [
        _finding(
            "loss_scale_imbalance",
            severity,
            f"Task '{big}' has a loss {ratio:.0f}x larger than task '{small}' {when}: "
            "it dominates the summed loss.",
            "Normalise the loss scales: weight each loss by the inverse of its initial value "
            "(init_loss), of the prior predictor's loss (prior_loss), or of its running value "
            "(realtime: L / L.detach()); then tune on validation.",
            dominant=big,
            smallest=small,
            ratio=round(ratio, 4),
            ratio_mean=round(mean[2], 4),
            ratio_initial=round(start[2], 4) if start else None,
            loss_mean={t: round(v, 6) for t, v in mean[3].items()},
            loss_initial={t: round(v, 6) for t, v in start[3].items()} if start else None,
        )
    ]


def _norm_dominance(run: dict[str, Any]) -> list[dict[str, Any]]:
    norms = {t: v for t, v in (run.get("grad_norm_mean") or {}).items() if v is not None}
    if len(norms) < 2:
        return []
    big = max(norms, key=norms.__getitem__)
    small = min(norms, key=norms.__getitem__)
    if norms[small] <= 0:
        return [
            _finding(
                "grad_norm_dominance",
                "critical",
                f"Task '{small}' has no gradient on the shared parameters.",
                "Check that its loss depends on the shared trunk.",
                dominant=big,
                smallest=small,
                ratio=None,
            )
        ]
    ratio = norms[big] / norms[small]
    if ratio < NORM_RATIO_WARN:
        return []
    severity = "critical" if ratio >= NORM_RATIO_CRIT else "warning"
    return [
        _finding(
            "grad_norm_dominance",
            severity,
            f"Task '{big}' pulls the shared parameters {ratio:.1f}x harder than task '{small}' "
            f"(mean gradient norm {norms[big]:.3g} vs {norms[small]:.3g}).",
            "Equalise gradient magnitudes: gradnorm (learned weights), gradnormalize (unit-norm "
            "task gradients) or imtl; loss-scale weighting helps when the losses differ too.",
            dominant=big,
            smallest=small,
            ratio=round(ratio, 4),
            grad_norm_mean={t: round(v, 6) for t, v in norms.items()},
        )
    ]


def _conflicts(run: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for pair in run.get("pairs") or []:
        rate, cos = pair.get("conflict_rate"), pair.get("cosine_mean")
        if rate is None or cos is None:
            continue
        neg = pair.get("conflict_cosine_mean")
        strong = neg is not None and neg <= -WEAK_COSINE
        if cos > MEAN_COSINE_CONFLICT and not (rate >= CONFLICT_WARN and strong):
            if rate >= CONFLICT_WARN:
                out.append(
                    _finding(
                        "near_orthogonal",
                        "info",
                        f"Tasks '{pair['a']}' and '{pair['b']}' have nearly orthogonal gradients "
                        f"(mean cosine {cos:+.2f}; on the {rate:.0%} of steps with a negative "
                        f"cosine it averages {neg:+.2f}): the sign flips are noise.",
                        "Little to gain from gradient surgery for this pair; look at scale "
                        "imbalance first.",
                        a=pair["a"],
                        b=pair["b"],
                        conflict_rate=round(rate, 4),
                        cosine_mean=round(cos, 4),
                        conflict_cosine_mean=neg,
                    )
                )
            continue
        severity = "critical" if rate >= CONFLICT_CRIT else "warning"
        out.append(
            _finding(
                "directional_conflict",
                severity,
                f"Tasks '{pair['a']}' and '{pair['b']}' conflict on {rate:.0%} of steps "
                f"(mean gradient cosine {cos:+.2f}"
                + (f", {neg:+.2f} on the conflicting steps" if neg is not None else "")
                + "): each step for one undoes part of the other.",
                "Try gradient surgery: pcgrad (projects conflicting components away), cagrad, "
                "mgda or nash_mtl; run `mtldiag compare SPEC --methods ew,pcgrad,cagrad,mgda` to "
                "see which helps this model.",
                a=pair["a"],
                b=pair["b"],
                conflict_rate=round(rate, 4),
                cosine_mean=round(cos, 4),
                gms_mean=pair.get("gms_mean"),
                conflict_cosine_mean=neg,
            )
        )
    return out


def _location(run: dict[str, Any], layers: Sequence[str]) -> list[dict[str, Any]]:
    if len(layers) < 2:
        return []
    ranked = rank_layers(run, layers)
    if not ranked:
        return []
    rate = {s.layer: s.worst_rate for s in ranked}
    top = [s.layer for s in ranked[:TOP_LAYERS]]
    deep_cut = len(layers) - max(1, len(layers) // 3)
    deep = [s.layer for s in ranked[:TOP_LAYERS] if s.depth > deep_cut]
    shallow_rates = [rate[x] for x in layers[:deep_cut] if x in rate]
    concentrated = (
        bool(deep)
        and deep[0] == top[0]
        and (not shallow_rates or max(shallow_rates) < rate[top[0]] - 0.1)
    )
    msg = (
        "Conflict is strongest in "
        + ", ".join(f"'{x}' ({rate[x]:.0%} conflicting steps)" for x in top)
        + "."
    )
    if concentrated:
        suggestion = (
            "The conflict concentrates in the deepest shared layers: branching the network "
            "earlier (task-specific copies of those layers) is an option, besides gradient "
            "surgery restricted to them (shared: globs)."
        )
    else:
        suggestion = (
            "The conflict is spread through the shared trunk: prefer gradient surgery over "
            "re-branching."
        )
    return [
        _finding(
            "conflict_location",
            "info",
            msg,
            suggestion,
            layers={x: round(rate[x], 4) for x in top},
            concentrated_deep=concentrated,
        )
    ]
