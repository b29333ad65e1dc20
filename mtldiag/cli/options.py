"""Options that several commands share, declared once (same flag, same help, same default)."""

from __future__ import annotations

from typing import Any

import typer

SPEC_HELP = "The YAML spec (default: mtldiag.yaml in the current folder)."

CHECK = typer.Option(
    False, "--check", help="Run the spec's checks (or --rules) on the result; exit 1 on failure."
)
RULES = typer.Option(None, "--rules", help="Rules file for --check.")
BASELINE = typer.Option(None, "--baseline", help="Baseline run directory for --check.")
WRT = typer.Option(
    None,
    "--wrt",
    help="Per-task gradients w.r.t. the shared representation or the parameters "
    "[spec: representation].",
)
LOG = typer.Option(None, "--log", help="Trackers, e.g. tensorboard,mlflow,wandb [spec: log].")
AS_JSON = typer.Option(
    False, "--json", help="Print the summary as JSON on stdout (nothing else there)."
)
QUIET = typer.Option(
    False, "--quiet", "-q", help="No progress and no tables: only the run directory."
)
ACCUMULATE = typer.Option(
    None, "--accumulate", help="Micro-batches per optimizer step [spec: accumulate, 1]."
)
PRECISION = typer.Option(None, "--precision", help="fp32 | bf16 | fp16 [spec: precision].")
CLIP_NORM = typer.Option(
    None, "--clip-grad-norm", help="Clip the update's norm before each step [spec]."
)


def training_overrides(
    accumulate: int | None, precision: str | None, clip_grad_norm: float | None
) -> dict[str, Any]:
    """Command-line training options as spec keys: the spec's checks then apply to them."""
    given = {
        "accumulate": accumulate,
        "precision": precision,
        "clip_grad_norm": clip_grad_norm,
    }
    return {k: v for k, v in given.items() if v is not None}
