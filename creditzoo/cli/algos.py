"""``creditzoo algos``: what the zoo holds, one line per algorithm."""

from __future__ import annotations

import inspect

import typer

from creditzoo.algorithms import ALGORITHMS, DESCRIPTIONS, _base_function, get_algorithm
from creditzoo.cli.app import app


@app.command("algos")
def algos_command() -> None:
    """List the algorithms: name, rollout shape, completions, paper, what it credits, and completion cost.

    The cost is the extra model calls for T steps, window start w and size K (docs/math.md sections 7 and 9).
    """
    for name in ALGORITHMS:
        algorithm = get_algorithm(name)
        needs = "completions" if algorithm.needs_completions else "final-only"
        summary = DESCRIPTIONS.get(name) or (inspect.getdoc(_base_function(algorithm.fn)) or "").split("\n")[0]
        typer.echo(f"{name:<22} {algorithm.rollout_shape:<7} {needs:<12} {algorithm.paper:<17} {summary}")
        typer.echo(f"{'':<22} cost: {algorithm.completion_cost}")
