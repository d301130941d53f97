"""``creditzoo algos``: what the zoo holds, a few lines per algorithm, fitted to the terminal's width."""

from __future__ import annotations

import inspect

import typer

from creditzoo.algorithms import ALGORITHMS, DESCRIPTIONS, _base_function, get_algorithm
from creditzoo.cli.app import app
from creditzoo.cli.terminal import echo_wrapped, text_width


@app.command("algos")
def algos_command(
    wide: bool = typer.Option(False, "--wide", help="one long line per algorithm and its cost, never wrapped"),
) -> None:
    """List the algorithms: name, rollout shape, completions, paper, what it credits, and completion cost.

    The cost is the extra model calls for T steps, window start w and size K (ALGORITHMS.md sections 5 and 7).
    """
    width, column = text_width(), max(len(name) for name in ALGORITHMS)
    for name in ALGORITHMS:
        algorithm = get_algorithm(name)
        needs = "completions" if algorithm.needs_completions else "final-only"
        summary = DESCRIPTIONS.get(name) or (inspect.getdoc(_base_function(algorithm.fn)) or "").split("\n")[0]
        head = f"{name:<{column}}  {algorithm.rollout_shape:<7} {needs:<12} {algorithm.paper}"
        if wide:
            typer.echo(f"{head:<{column + 40}} {summary}")
            typer.echo(f"{'':<{column}}  cost: {algorithm.completion_cost}")
            continue
        typer.echo(head)
        echo_wrapped(summary, width)
        echo_wrapped(f"cost: {algorithm.completion_cost}", width, hang="      ")
