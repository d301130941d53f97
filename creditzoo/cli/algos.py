"""``creditzoo algos``: what the zoo holds, one line per algorithm."""

from __future__ import annotations

import typer

from creditzoo.algorithms import ALGORITHMS
from creditzoo.cli.app import app


@app.command("algos")
def algos_command() -> None:
    """List the algorithms: name, rollout shape, completions, paper, what it credits, and completion cost.

    The cost is the extra model calls for T steps, window start w and size K (docs/math.md sections 7 and 9).
    """
    for name in ALGORITHMS:
        spec = ALGORITHMS[name]
        needs = "completions" if spec.needs_completions else "final-only"
        typer.echo(f"{name:<22} {spec.shape:<7} {needs:<12} {spec.paper:<17} {spec.description}")
        typer.echo(f"{'':<22} cost: {spec.cost}")
