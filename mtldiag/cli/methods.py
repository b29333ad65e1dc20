"""``mtldiag methods``: every balancing method with its paper, defaults, state and cost."""

from __future__ import annotations

import json

import typer
from rich.text import Text

from mtldiag.cli.app import app, console, guarded
from mtldiag.errors import MtldiagError
from mtldiag.methods import describe
from mtldiag.methods.registry import MethodInfo


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
                "required": [h.name for h in r.hyperparams if h.required],
                "stateful": r.stateful,
                "cost": r.cost,
            }
            for r in rows
        ]
        console.print_json(json.dumps(data, default=str))
        return
    console.print("Balancing methods: use one with --method NAME or NAME:k=v,...\n")
    for r in rows:
        console.print(method_block(r), highlight=False)


def method_block(r: MethodInfo) -> Text:
    """One method in plain words, wrapped to the terminal (readable at 80 columns)."""
    state = "keeps state between steps" if r.stateful else "no state"
    out = Text()
    out.append(r.name, style="bold")
    out.append(f"  {r.family} method, {r.cost} per step, {state}\n")
    if r.aliases:
        out.append(f"  also called: {', '.join(r.aliases)}\n", style="dim")
    out.append(f"  from: {r.paper}\n")
    for h in r.hyperparams:
        default = (
            "required"
            if h.required
            else "optional"
            if h.default is None
            else f"default {h.default}"
        )
        out.append(f"  {h.name} ({default}): {h.help}\n")
    return out
