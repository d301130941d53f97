"""The typer application every command module registers on, and the one way commands report bad input."""

from __future__ import annotations

import os
from typing import NoReturn

import typer
from rich.console import Console

app = typer.Typer(
    name="creditzoo",
    help="Credit assignment for GRPO fine-tuning of flow-matching text-to-image models.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # click's plain help: at 80 columns rich's option table cut 13 option names
)

# user text (paths, prompts, noise specs like student_t:-1:1) is printed literally: no markup, no :emoji: codes
console = Console(markup=False, emoji=False, soft_wrap=True)
error_console = Console(stderr=True, highlight=False, soft_wrap=True, markup=False, emoji=False)


def is_main_process() -> bool:
    """False on the other processes of a multi-process launch (``RANK`` > 0): only the main one prints."""
    return os.environ.get("RANK", "0") == "0"


def fail(message: str) -> NoReturn:
    """Print one line naming the problem to stderr and exit with code 2 (bad input).

    Under a multi-process launch every process meets the same bad input; only the main process prints it.
    A long value quoted in the message (a 10,000-character prompt or path) is cut (:func:`cut_long_values`).
    """
    from creditzoo.messages import cut_long_values

    if is_main_process():
        error_console.print(f"error: {cut_long_values(message)}", markup=False)
    raise typer.Exit(code=2)


@app.callback()
def _root() -> None:
    """Credit assignment for GRPO fine-tuning of flow-matching text-to-image models."""
