"""``creditzoo algos``: what the zoo holds, one line per algorithm."""

from __future__ import annotations

import typer

from creditzoo.algorithms import ALGORITHMS, DESCRIPTIONS, get_algorithm
from creditzoo.cli.app import app


@app.command("algos")
def algos_command() -> None:
    """List the credit-assignment algorithms, one line each (name, needs completions, what it credits)."""
    for name in ALGORITHMS:
        needs = "completions" if get_algorithm(name).needs_completions else "final-only"
        typer.echo(f"{name:<22} {needs:<12} {DESCRIPTIONS[name]}")
