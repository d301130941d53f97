"""Command-line interface: each command a thin shell over library functions."""

from creditzoo.cli import algos  # noqa: F401  (registers commands on the app)
from creditzoo.cli.app import app


def main() -> None:
    """Run the ``creditzoo`` console script."""
    app()
