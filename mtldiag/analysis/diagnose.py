"""Rules that turn a run's metrics into findings a person can act on.

Each finding has a ``code``, a ``severity`` (``info`` | ``warning`` | ``critical``), a
``message``, a ``suggestion`` and the ``evidence`` numbers it rests on. Thresholds:

=========================  ==============================================================
loss_scale_imbalance        largest / smallest task loss >= 10 (critical >= 100), at the
                            start (mean of the first steps) or on average, whichever is larger
grad_norm_dominance         largest / smallest mean gradient norm on shared params >= 5
                            (critical >= 20)
directional_conflict        a pair with mean cosine <= -0.1, or one flipping sign often
                            (conflict rate >= 0.3, its Wilson interval wholly above) and hard
                            (mean cosine <= -0.1 on the conflicting steps); severity is the
                            mean cosine's effect size (:mod:`mtldiag.analysis.conflicts`):
                            minor > -0.1 (info), moderate (warning), strong <= -0.3 (critical)
near_orthogonal             a pair that flips sign often (conflict rate >= 0.3) but only
                            with |cosine| < 0.1: the tasks barely interact; not a conflict
too_few_steps               a rate rule would fire, but the rate's interval straddles 0.3
conflict_location           the shared layers ranked by :func:`rank_layers` (conflict beyond
                            what noise gives a layer of that size); when the top one sits in
                            the deepest third of the trunk, branching before it is suggested
comparison_winner,          after ``mtldiag compare``: what the comparison showed against
comparison_no_winner,       ``ew``, paired by seed (:mod:`mtldiag.analysis.advice`)
comparison_inconclusive
no_issue                    none of the above
=========================  ==============================================================
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from mtldiag.analysis.advice import comparison_findings
from mtldiag.analysis.conflicts import pair_findings
from mtldiag.analysis.finding import finding
from mtldiag.analysis.layers import LayerScore, rank_layers
from mtldiag.analysis.numbers import sig

LOSS_RATIO_WARN = 10.0
LOSS_RATIO_CRIT = 100.0
NORM_RATIO_WARN = 5.0
NORM_RATIO_CRIT = 20.0
TOP_LAYERS = 3


def diagnose(
    run: dict[str, Any],
    layers: Sequence[str],
    layer_params: Mapping[str, int] | None = None,
    comparison: Mapping[str, Any] | None = None,
    space: str = "shared parameters",
) -> list[dict[str, Any]]:
    """Findings for one run entry of ``summary.json`` (``layers`` input side first).

    ``layer_params`` (the summary's parameter count per layer) weights the layer ranking; with
    a ``comparison`` (a compare summary's), the findings say what it showed instead of
    suggesting one. ``space``: what the gradients are taken w.r.t., as the findings name it.
    """
    out: list[dict[str, Any]] = []
    out += _loss_scale(run)
    out += _norm_dominance(run, space)
    pairs = [f for pair in run.get("pairs") or [] for f in pair_findings(pair)]
    out += pairs
    location = []
    if any(f["code"] == "directional_conflict" for f in pairs):
        location = _location(run, layers, layer_params)
    out += location
    if comparison:
        top = next(iter(location[0]["evidence"]["layers"] if location else {}), None)
        verdicts = comparison_findings(comparison, top)
        for f in out:
            if f["code"] == "directional_conflict" and verdicts:
                f["suggestion"] = "The comparison tested fixes for this: see its finding below."
        out += verdicts
    if not any(f["severity"] != "info" for f in out):
        out.append(
            finding(
                "no_issue",
                "info",
                "No loss-scale imbalance, gradient dominance or frequent conflict was seen.",
                "Equal weighting is a sound choice here"
                + ("." if comparison else "; `mtldiag compare` can confirm it."),
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
        finding(
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


def _norm_dominance(run: dict[str, Any], space: str) -> list[dict[str, Any]]:
    norms = {t: v for t, v in (run.get("grad_norm_mean") or {}).items() if v is not None}
    if len(norms) < 2:
        return []
    big = max(norms, key=norms.__getitem__)
    small = min(norms, key=norms.__getitem__)
    if norms[small] <= 0:
        return [
            finding(
                "grad_norm_dominance",
                "critical",
                f"Task '{small}' has no gradient on the {space}.",
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
        finding(
            "grad_norm_dominance",
            severity,
            f"Task '{big}' pulls the {space} {ratio:.1f}x harder than task '{small}' "
            f"(mean gradient norm {norms[big]:.3g} vs {norms[small]:.3g}).",
            "Equalise gradient magnitudes: gradnorm (learned weights), gradnormalize (unit-norm "
            "task gradients) or imtl; loss-scale weighting helps when the losses differ too.",
            dominant=big,
            smallest=small,
            ratio=round(ratio, 4),
            grad_norm_mean={t: round(v, 6) for t, v in norms.items()},
        )
    ]


def _location(
    run: dict[str, Any], layers: Sequence[str], layer_params: Mapping[str, int] | None
) -> list[dict[str, Any]]:
    if len(layers) < 2:
        return []
    ranked = rank_layers(run, layers, layer_params)
    if not ranked:
        return []
    top = ranked[:TOP_LAYERS]
    if top[0].beyond_noise >= 0:
        return [
            finding(
                "conflict_location",
                "info",
                "No shared layer conflicts beyond what noise alone gives its size "
                "(see docs/run-format.md, layer ranking).",
                "The conflict is spread through the shared trunk: prefer gradient surgery "
                "over re-branching.",
                layers={},
                concentrated_deep=False,
            )
        ]
    deep_cut = len(layers) - max(1, len(layers) // 3)
    shallow = [-s.beyond_noise for s in ranked if s.depth <= deep_cut]
    concentrated = top[0].depth > deep_cut and (
        not shallow or max(shallow) < -top[0].beyond_noise - 0.1
    )
    msg = "Conflict is strongest in " + ", ".join(_layer_text(s) for s in top) + "."
    if concentrated:
        suggestion = (
            "The conflict concentrates in the deepest shared layers: branching the network "
            f"before '{top[0].layer}' (task-specific copies of it and what follows) is an "
            "option, besides gradient surgery restricted to them (shared: globs)."
        )
    else:
        suggestion = (
            "The conflict is spread through the shared trunk: prefer gradient surgery over "
            "re-branching."
        )
    return [
        finding(
            "conflict_location",
            "info",
            msg,
            suggestion,
            layers={
                s.layer: {
                    "cosine_mean": s.worst_cosine,
                    "conflict_rate": round(s.worst_rate, 4),
                    "params": s.params,
                }
                for s in top
            },
            concentrated_deep=concentrated,
        )
    ]


def _layer_text(s: LayerScore) -> str:
    size = f", {s.params:,} parameters ({s.share:.0%} of shared)" if s.params and s.share else ""
    return (
        f"'{s.layer}' ({'–'.join(s.worst_pair)}: mean cosine {sig(s.worst_cosine, sign=True)}, "
        f"{s.worst_rate:.0%} conflicting steps{size})"
    )
