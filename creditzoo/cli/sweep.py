"""``creditzoo sweep``: a grid of training runs (algorithms x seeds x option values) in one directory.

The command takes every ``creditzoo train`` option as the sweep's fixed setting (its signature is built from
``train``'s, so the two cannot drift apart), plus ``--algo`` (repeatable), ``--seeds``, ``--grid`` and ``--out``.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from creditzoo.cli.app import app, console, error_console, fail
from creditzoo.cli.options import keyword_option, with_parameters
from creditzoo.cli.train import resolve_config, train_command

if TYPE_CHECKING:
    from creditzoo.sweep import SweepRun

NOT_FROM_TRAIN = ("algo", "seed", "run_dir", "resume", "overwrite")
"""``creditzoo train`` options a sweep replaces (by --algo/--seeds/--out) or has no use for."""


def sweep_command(**options: Any) -> None:
    """Train every (algorithm, grid point, seed) into --out/<name>/ with a manifest; resumes where it stopped."""
    from creditzoo.learner.config import OPTION_ALIASES
    from creditzoo.learner.preflight import UnwritablePathError, check_writable
    from creditzoo.sweep import (
        LaunchOptions,
        SweepError,
        execute,
        expand,
        parse_grid,
        parse_seeds,
        prepare,
    )

    sweep_keys = ("algos", "seeds", "grid", "out", "jobs", "launcher", "cluster", "executor_param", "config")
    given = {k: v for k, v in options.items() if k not in sweep_keys and v is not None and v != []}
    try:
        grid = parse_grid(options["grid"])
        seeds = parse_seeds(options["seeds"])
        launch = LaunchOptions(
            jobs=options["jobs"],
            launcher=options["launcher"],
            cluster=options["cluster"],
            executor_parameters=_executor_parameters(options["executor_param"]),
        )
    except SweepError as error:
        fail(str(error))
    both = sorted(option for option in given if OPTION_ALIASES.get(option, option) in grid)
    if both:
        fail(f"{', '.join('--' + o.replace('_', '-') for o in both)} given both as an option and in --grid")

    def make_config(values: dict[str, Any]):
        return resolve_config(options["config"], {**given, **values})  # validated where it is built

    out: Path = options["out"]
    try:
        check_writable(out, "--out")  # before the grid is expanded and any run starts
        runs = expand(options["algos"], seeds, grid, make_config)
        sweep = prepare(out, runs, grid)
    except (SweepError, UnwritablePathError) as error:
        fail(str(error))
    names = [run.name for run in runs]
    skipped = sum(sweep.run(name).status == "finished" for name in names)
    console.print(f"sweep {out}: {len(names)} runs, {skipped} finished already, {launch.jobs} at once", highlight=False)

    def report(name: str, status: str) -> None:
        console.print(f"  {status:<9} {name}", highlight=False)

    try:
        final = execute(out, names, launch, report)
    except SweepError as error:
        fail(str(error))
    except KeyboardInterrupt:
        error_console.print(f"interrupted; run the same command again to continue the sweep in {out}")
        raise typer.Exit(code=130) from None
    _print_table(out, runs, final)
    failed = [name for name, status in final.items() if status != "finished"]
    if failed:
        error_console.print(f"{len(failed)} of {len(names)} runs failed ({', '.join(failed)}); see {out / 'logs'}")
        raise typer.Exit(code=1)


def _executor_parameters(specs: list[str]) -> dict[str, Any]:
    from creditzoo.sweep import SweepError

    parameters: dict[str, Any] = {}
    for spec in specs:
        key, sep, value = spec.partition("=")
        if not sep or not key:
            raise SweepError(f"malformed --executor-param {spec!r}; expected KEY=VALUE, e.g. slurm_partition=gpu")
        parameters[key] = int(value) if value.isdigit() else value
    return parameters


def _print_table(out: Path, runs: list[SweepRun], final: dict[str, str]) -> None:
    """Each run's status and last test scores, one column per metric of the runs' tasks."""
    from rich.table import Table

    from creditzoo.learner.checkpoint import read_metrics
    from creditzoo.tasks import get_task

    metrics = {m.test_key: m for run in runs for m in get_task(run.config.env).metrics}  # in order, once each
    table = Table("run", "status", *(f"test {metric.label}" for metric in metrics.values()), title=f"sweep {out}")
    for run in runs:
        lines = read_metrics(out / run.name) if final[run.name] == "finished" else []
        last = lines[-1] if lines else {}
        values = [last.get(key) for key in metrics]
        table.add_row(run.name, final[run.name], *("-" if value is None else f"{value:.4f}" for value in values))
    console.print(table)


def _parameters() -> list[inspect.Parameter]:
    """``sweep``'s parameters: its own, then every ``train`` option it does not replace (TrainConfig's included)."""
    own = [
        keyword_option("algos", list[str], typer.Option(..., "--algo", help="algorithm to train (repeat for several)")),
        keyword_option("seeds", str, typer.Option("0", help="seeds, e.g. 0,1,2 or 0-4")),
        keyword_option(
            "grid", list[str], typer.Option([], help="option=v1,v2: train at each value (repeat for a product)")
        ),
        keyword_option(
            "out", Path, typer.Option(..., help="sweep directory (manifest.json and one run directory per run)")
        ),
        keyword_option(
            "jobs", int, typer.Option(1, help="runs at once (subprocesses sharing the CPU threads or the GPU)")
        ),
        keyword_option(
            "launcher", str, typer.Option("local", help="local, or submitit (Slurm; needs the cluster extra)")
        ),
        keyword_option(
            "cluster", str, typer.Option(None, help="submitit cluster: slurm, local, debug [default: auto-detect]")
        ),
        keyword_option(
            "executor_param", list[str], typer.Option([], help="KEY=VALUE for submitit, e.g. slurm_partition=gpu")
        ),
    ]
    inherited = inspect.signature(train_command).parameters.values()
    return own + [parameter for parameter in inherited if parameter.name not in NOT_FROM_TRAIN]


app.command("sweep")(with_parameters(sweep_command, _parameters()))
