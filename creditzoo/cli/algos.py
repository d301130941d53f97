"""``creditzoo algos``: what the zoo holds, a few lines per algorithm, fitted to the terminal's width."""

from __future__ import annotations

import typer

from creditzoo.algorithms import ALGORITHMS
from creditzoo.cli.app import app
from creditzoo.cli.terminal import echo_wrapped, text_width


@app.command("algos")
def algos_command(
    wide: bool = typer.Option(False, "--wide", help="one long line per algorithm and its cost, never wrapped"),
) -> None:
    """List the algorithms: name, rollout shape, completions, paper, what it credits, and completion cost.

    The cost is the extra model calls for T steps, window start w and size K (docs/math.md sections 7 and 9).
    """
    width, column = text_width(), max(len(name) for name in ALGORITHMS)
    for name, spec in ALGORITHMS.items():
        needs = "completions" if spec.needs_completions else "final-only"
        head = f"{name:<{column}}  {spec.shape:<7} {needs:<12} {spec.paper}"
        if wide:
            typer.echo(f"{head:<{column + 40}} {spec.description}")
            typer.echo(f"{'':<{column}}  cost: {spec.cost}")
            continue
        typer.echo(head)
        echo_wrapped(spec.description, width)
        echo_wrapped(f"cost: {spec.cost}", width, hang="      ")
