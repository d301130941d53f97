"""Command-line interface: each command a thin shell over library functions."""

import sys

import typer

from creditzoo.cli import algos, analyze, evaluate, pretrain, sweep, train  # noqa: F401  (registers commands on the app)
from creditzoo.cli.app import app

try:  # typer >= 0.22 vendors click; older releases use click itself
    from typer._click.exceptions import NoArgsIsHelpError, UsageError
except ImportError:  # pragma: no cover
    from click.exceptions import UsageError

    NoArgsIsHelpError = ()


def main() -> None:
    """Run the ``creditzoo`` console script; usage errors become one line on stderr and exit code 2."""
    if len(sys.argv) == 1:
        sys.argv.append("--help")
    try:
        code = app(standalone_mode=False)
    except NoArgsIsHelpError as error:
        typer.echo(error.ctx.get_help() if error.ctx is not None else "", err=True)
        sys.exit(2)
    except UsageError as error:
        command = error.ctx.command_path if error.ctx is not None else "creditzoo"
        print(f"error: {error.format_message()} (see '{command} --help')", file=sys.stderr)
        sys.exit(2)
    except typer.Abort:
        print("aborted", file=sys.stderr)
        sys.exit(130)
    except ValueError as error:  # the last net: a command that let bad input through still ends in one line
        from creditzoo.messages import cut_long_values

        print(f"error: {cut_long_values(str(error)) if str(error) else type(error).__name__}", file=sys.stderr)
        sys.exit(2)
    sys.exit(code if isinstance(code, int) else 0)
