"""The diagnosis' task-pair rules: directional conflict, sign noise, and too few steps to tell.

Severity is the *effect size* of the mean gradient cosine, the average share of one task's
update direction that points against the other's:

=====================  ========  ==========  =============================================
mean cosine            effect    severity    reads as
=====================  ========  ==========  =============================================
> −0.1                 minor     info        −0.05: each step undoes ~5 % of the other's
−0.3 < cosine ≤ −0.1   moderate  warning     a real tug of war, worth testing a fix for
≤ −0.3                 strong    critical    each step undoes ≥ 30 % of the other's
=====================  ========  ==========  =============================================

A pair conflicts when its mean cosine is at most −0.1, or when it flips sign often (conflict
rate ≥ 0.3) and hard (mean cosine ≤ −0.1 on the conflicting steps); ``near_orthogonal`` is a
pair that flips often but only with |cosine| < 0.1. A rule resting on the rate fires only when
the rate's Wilson interval (``conflict_rate_ci95``) lies wholly on its side of 0.3; when the
interval straddles it, a ``too_few_steps`` finding says so instead.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from mtldiag.analysis.finding import finding
from mtldiag.analysis.numbers import is_number, sig
from mtldiag.analysis.stats import straddles

CONFLICT_RATE = 0.3  # a pair whose gradients disagree in sign this often "flips often"
MODERATE_COSINE = -0.1  # mean cosine at or below: a moderate effect (warning)
STRONG_COSINE = -0.3  # at or below: a strong effect (critical)
WEAK_COSINE = 0.1  # |cos| below this on conflicting steps: sign noise, not a tug of war

Effect = Literal["minor", "moderate", "strong"]
SEVERITY = {"minor": "info", "moderate": "warning", "strong": "critical"}


def effect(cosine: float) -> Effect:
    """The effect size of a mean cosine (see the module's table)."""
    if cosine <= STRONG_COSINE:
        return "strong"
    return "moderate" if cosine <= MODERATE_COSINE else "minor"


def rate_side(pair: Mapping[str, Any]) -> Literal["above", "below", "unknown"]:
    """Which side of ``CONFLICT_RATE`` the pair's rate is on, as far as its interval tells."""
    rate, ci = pair.get("conflict_rate"), pair.get("conflict_rate_ci95")
    if not is_number(rate):
        return "unknown"
    if isinstance(ci, (list, tuple)) and len(ci) == 2 and straddles((ci[0], ci[1]), CONFLICT_RATE):
        return "unknown"
    return "above" if rate >= CONFLICT_RATE else "below"


def _hard(pair: Mapping[str, Any]) -> bool:
    neg = pair.get("conflict_cosine_mean")
    return is_number(neg) and neg <= -WEAK_COSINE


def is_conflict(pair: Mapping[str, Any]) -> bool:
    """The directional-conflict rule (the diagnosis and the pair table's marks share it)."""
    cos = pair.get("cosine_mean")
    if not is_number(cos):
        return False
    return cos <= MODERATE_COSINE or (rate_side(pair) == "above" and _hard(pair))


def _steps(pair: Mapping[str, Any]) -> str:
    """ "of steps", or "of 4 instrumented steps (95% interval 15–85%)" when n is known."""
    n, ci = pair.get("conflict_rate_n"), pair.get("conflict_rate_ci95")
    if not is_number(n):
        return "of steps"
    if isinstance(ci, (list, tuple)) and len(ci) == 2:
        return f"of {n} instrumented steps (95% interval {ci[0]:.0%}–{ci[1]:.0%})"
    return f"of {n} instrumented steps"


SURGERY = (
    "Try gradient surgery: pcgrad (projects conflicting components away), cagrad, mgda or "
    "nash_mtl; run `mtldiag compare SPEC --methods ew,pcgrad,cagrad,mgda --seeds 0,1,2` to "
    "see which helps this model beyond seed noise."
)


def pair_findings(pair: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The findings on one whole-trunk pair entry (none when it neither conflicts nor flips)."""
    rate, cos = pair.get("conflict_rate"), pair.get("cosine_mean")
    if not is_number(rate) or not is_number(cos):
        return []
    a, b, neg = pair["a"], pair["b"], pair.get("conflict_cosine_mean")
    evidence = {
        "a": a,
        "b": b,
        "conflict_rate": round(rate, 4),
        "conflict_rate_n": pair.get("conflict_rate_n"),
        "conflict_rate_ci95": pair.get("conflict_rate_ci95"),
        "cosine_mean": round(cos, 4),
    }
    if is_conflict(pair):
        size = effect(cos)
        suggestion = SURGERY
        if size == "minor":
            suggestion = (
                "A minor effect on average: gradient surgery has little to remove; look at the "
                "loss scales and gradient magnitudes first."
            )
        return [
            finding(
                "directional_conflict",
                SEVERITY[size],
                f"Tasks '{a}' and '{b}' conflict on {rate:.0%} {_steps(pair)}; mean "
                f"gradient cosine {sig(cos, sign=True)}, a {size} effect"
                + (f", {sig(neg, sign=True)} on the conflicting steps" if is_number(neg) else "")
                + (
                    ": each step for one undoes part of the other."
                    if size != "minor"
                    else ": they disagree often, but weakly on average."
                ),
                suggestion,
                effect=size,
                gms_mean=pair.get("gms_mean"),
                conflict_cosine_mean=neg,
                **evidence,
            )
        ]
    if rate < CONFLICT_RATE:
        return []
    n = pair.get("conflict_rate_n")
    if rate_side(pair) == "unknown":  # the rate rule would fire, but its interval says maybe
        return [
            finding(
                "too_few_steps",
                "info",
                f"Tasks '{a}' and '{b}' have a negative cosine on {rate:.0%} {_steps(pair)}: "
                "too few steps to tell whether they flip sign often "
                f"(≥ {CONFLICT_RATE:.0%}).",
                f"Only {n} instrumented steps: lower --every (or raise --steps).",
                **evidence,
            )
        ]
    return [
        finding(
            "near_orthogonal",
            "info",
            f"Tasks '{a}' and '{b}' have nearly orthogonal gradients (mean cosine "
            f"{sig(cos, sign=True)}; on the {rate:.0%} of steps with a negative cosine it "
            f"averages {sig(neg, sign=True)}): the sign flips are noise.",
            "Little to gain from gradient surgery for this pair; look at scale imbalance first.",
            conflict_cosine_mean=neg,
            **evidence,
        )
    ]
