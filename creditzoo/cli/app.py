"""The typer application every command module registers on."""

import typer

app = typer.Typer(
    name="creditzoo",
    help="Credit assignment for GRPO fine-tuning of flow-matching text-to-image models.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
