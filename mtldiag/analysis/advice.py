"""What a comparison says to do next: the diagnosis' findings once methods were compared.

A conflict finding alone can only suggest trying gradient surgery; after ``mtldiag compare``
the diagnosis reports what the runs showed instead. Each method row is paired seed by seed
with ``ew`` (the difference of their per-seed Δm%):

- ``comparison_winner``: some method beat ``ew`` beyond seed noise (the 95 % interval of the
  difference lies below 0 on at least ``MIN_SEEDS`` seeds): the best of them, with every
  hyper-parameter it ran with;
- ``comparison_no_winner``: none did, on enough seeds: surgery is not the lever; the next ones
  are the loss scales, the trunk's capacity, and branching before the most conflicted layer;
- ``comparison_inconclusive``: too few paired seeds to say either.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from mtldiag.analysis.evidence import MIN_SEEDS, seeds_hint
from mtldiag.analysis.finding import finding
from mtldiag.analysis.numbers import interval, sig
from mtldiag.analysis.paired import paired_difference
from mtldiag.errors import MtldiagError
from mtldiag.methods import registry
from mtldiag.methods.base import MethodError
from mtldiag.rundir.schema import PairedDifference
from mtldiag.spec import parse_method


def method_text(label: str) -> str:
    """A method label with every hyper-parameter it ran with: "cagrad (c=0.4, rescale=1)"."""
    try:
        ms = parse_method(label)
        cls = registry.lookup(ms.name)
    except MtldiagError:  # a label this version cannot read: shown as written
        return label
    hp = {p.name: p.default for p in cls.params}
    hp.update(ms.hparams)
    if not hp:
        return f"{cls.name} (no hyper-parameters)"
    return f"{cls.name} (" + ", ".join(f"{k}={v}" for k, v in hp.items()) + ")"


def _family(label: str) -> str | None:
    try:
        return registry.lookup(label.partition(":")[0]).family
    except MethodError:
        return None


def _against_ew(rows: Sequence[Mapping[str, Any]]) -> list[tuple[Mapping, PairedDifference]]:
    ew = next((r for r in rows if r.get("label") == "ew"), None)
    if ew is None:
        return []
    return [
        (r, paired_difference(r.get("delta_m_per_seed") or {}, ew.get("delta_m_per_seed") or {}))
        for r in rows
        if r.get("kind") == "method" and r.get("label") != "ew" and r.get("rank") is not None
    ]


def comparison_findings(
    comparison: Mapping[str, Any], top_layer: str | None = None
) -> list[dict[str, Any]]:
    """The finding on what ``comparison`` showed (none without an ``ew`` row to pair with)."""
    pairs = _against_ew(comparison.get("rows") or [])
    if not pairs:
        return []
    enough = [(r, d) for r, d in pairs if d["seeds"] >= MIN_SEEDS and d["diff_ci95"]]
    winners = [(r, d) for r, d in enough if d["diff_ci95"][1] < 0]
    if winners:
        row, d = min(winners, key=lambda rd: rd[1]["diff_mean"])
        surgery_won = any(_family(r["label"]) == "gradient" for r, _ in winners)
        note = ""
        if _family(row["label"]) == "weighting" and not surgery_won:
            note = (
                " No gradient-surgery method beat ew beyond noise: the loss weights were the lever."
            )
        return [
            finding(
                "comparison_winner",
                "info",
                f"In the comparison, {row['label']} beat ew beyond seed noise: its Δm% is "
                f"{sig(-d['diff_mean'])} points lower, paired by seed (95% interval of the "
                f"difference {interval(d['diff_ci95'])}, {d['seeds']} seeds).{note}",
                f"Train with {method_text(row['label'])}.",
                method=row["label"],
                diff_mean=d["diff_mean"],
                diff_ci95=d["diff_ci95"],
                seeds=d["seeds"],
            )
        ]
    if len(enough) == len(pairs):
        seeds = min(d["seeds"] for _, d in enough)
        where = f"branching the network before '{top_layer}'" if top_layer else "branching earlier"
        return [
            finding(
                "comparison_no_winner",
                "warning",
                f"In the comparison, no method beat ew beyond seed noise "
                f"({', '.join(r['label'] for r, _ in pairs)}; at least {seeds} paired seeds).",
                "Gradient surgery is not the lever here. Next: the loss scales (init_loss, or "
                "normalise each loss), the capacity of the shared trunk (a wider one), or "
                f"{where}.",
                methods=[r["label"] for r, _ in pairs],
                seeds=seeds,
            )
        ]
    row, d = min(pairs, key=lambda rd: rd[1]["diff_mean"] if rd[1]["seeds"] else 0.0)
    return [
        finding(
            "comparison_inconclusive",
            "info",
            f"The comparison cannot yet tell whether any method beats ew: only "
            f"{min(d['seeds'] for _, d in pairs)} paired seeds.",
            f"For {row['label']} against ew, {seeds_hint(d)}.",
            seeds=min(d["seeds"] for _, d in pairs),
        )
    ]
