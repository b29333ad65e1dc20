"""``mtldiag methods``: every balancing method with its paper, defaults, state and cost."""

from __future__ import annotations

import json

import typer
from rich.table import Table

from mtldiag.cli.app import app, console, guarded
from mtldiag.errors import MtldiagError
from mtldiag.methods import describe


@app.command("methods")
@guarded
def methods_cmd(
    family: str | None = typer.Option(
        None, "--family", help="Only 'weighting' or 'gradient' methods."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """List every balancing method: aliases, family, paper, hyper-parameters, state, cost."""
    if family is not None and family not in ("weighting", "gradient"):
        raise MtldiagError(f"--family should be weighting or gradient, not {family!r}.")
    rows = [r for r in describe() if family is None or r.family == family]
    if as_json:
        data = [
            {
                "name": r.name,
                "aliases": list(r.aliases),
                "family": r.family,
                "paper": r.paper,
                "hyperparams": {h.name: h.default for h in r.hyperparams},
                "stateful": r.stateful,
                "cost": r.cost,
            }
            for r in rows
        ]
        console.print_json(json.dumps(data, default=str))
        return
    table = Table(title="Balancing methods (use --method NAME:k=v,...)", show_lines=False)
    table.add_column("name", style="bold")
    table.add_column("aliases", style="dim")
    table.add_column("family")
    table.add_column("paper")
    table.add_column("hyper-parameters (defaults)")
    table.add_column("state")
    table.add_column("cost / step")
    for r in rows:
        hps = (
            ", ".join(
                f"{h.name}={h.default}" if h.default is not None else f"{h.name} (required)"
                for h in r.hyperparams
            )
            or "—"
        )
        table.add_row(
            r.name,
            ", ".join(r.aliases),
            r.family,
            r.paper,
            hps,
            "yes" if r.stateful else "no",
            r.cost,
        )
    console.print(table)
