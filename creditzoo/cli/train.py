"""``creditzoo train``: GRPO with any algorithm of the zoo, on any environment; ``creditzoo envs``."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import Any

import typer

from creditzoo.cli.app import app, console, error_console, fail, is_main_process
from creditzoo.cli.options import config_options, keyword_option, option_fields, option_parameter, with_parameters
from creditzoo.learner.config import OPTION_ALIASES, TrainConfig
from creditzoo.tasks import Metric, get_task

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

RENAMED = OPTION_ALIASES
"""Command-line option -> TrainConfig field, where the names differ."""


def resolve_config(config_file: Path | None, overrides: dict[str, Any]) -> TrainConfig:
    """Library defaults, then the environment's defaults, then the TOML file, then the options given."""
    values: dict[str, Any] = {}
    if config_file is not None:
        values.update(read_config_file(config_file))
    values.update({RENAMED.get(k, k): v for k, v in overrides.items() if v is not None})
    try:
        return TrainConfig.for_task(**values)
    except (ValueError, TypeError) as error:
        fail(str(error))


def read_config_file(path: Path) -> dict[str, Any]:
    """The TrainConfig fields of a TOML file, each of its field's type; bad input ends in one line naming the file."""
    from creditzoo.learner.config import field_value
    from creditzoo.messages import shown

    name = shown(str(path))
    try:
        values = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        fail(f"config file {name} does not exist")
    except IsADirectoryError:
        fail(f"config file {name} is a directory; give a TOML file of TrainConfig fields")
    except UnicodeDecodeError:
        fail(f"config file {name} is not UTF-8 text (a TOML file of TrainConfig fields)")
    except OSError as error:
        fail(f"config file {name} cannot be read: {error.strerror}")
    except tomllib.TOMLDecodeError as error:
        fail(f"config file {name} is not valid TOML: {error}")
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    for key, value in values.items():
        if key in known:
            try:
                field_value(key, value)
            except ValueError as error:
                fail(f"config file {name}: {error}")
    return values


def train_command(**options: Any) -> None:
    """Train the environment's model with GRPO and the chosen credit-assignment algorithm."""
    from creditzoo.learner.distributed import check_split, launched_world_size
    from creditzoo.learner.grpo import NonFiniteRewardError
    from creditzoo.learner.run import load_run_config, resolve_device
    from creditzoo.learner.tracking import check_available

    run_dir, config, resume, overwrite = (options[name] for name in ("run_dir", "config", "resume", "overwrite"))
    iterations, log = options["iterations"], options["log"] or None  # typer gives [] for a list option not given
    given = {option_parameter(item.name): options[option_parameter(item.name)] for item in option_fields()}
    given["log"] = log
    if resume is not None:
        extra = sorted(k for k, v in given.items() if v is not None and k not in ("iterations", "log"))
        if extra or config is not None:
            fail(
                "--resume continues the stored config; only --iterations may change "
                f"(got {', '.join(extra) or '--config'})"
            )
        try:
            stored = load_run_config(resume)
        except ValueError as error:  # RunDirectoryError included
            fail(str(error))
        try:  # tracking is not a training choice: --log may start mirroring a resumed run
            train_config = dataclasses.replace(
                stored, iterations=iterations or stored.iterations, log=log or stored.log
            )
        except ValueError as error:
            fail(str(error))
        directory = resume
    else:
        train_config = resolve_config(config, given)
        directory = run_dir or Path("runs") / f"{train_config.algo}-{train_config.env}-seed{train_config.seed}"
    try:
        resolve_device(train_config.device)  # before any output: CUDA asked for on a machine without it
        check_split(train_config.prompts_per_iteration, launched_world_size())  # N processes of accelerate launch
        check_available(train_config.log)  # a tracker's package is an installation matter, like CUDA
        summary = _run(train_config, directory, resume=resume is not None, overwrite=overwrite)
    except ValueError as error:  # bad input found by the library (RunDirectoryError, device, prompts, ...)
        fail(str(error))
    except NonFiniteRewardError as error:
        if is_main_process():
            error_console.print(f"stopped: {error}; the last checkpoint in {directory} is kept", markup=False)
        raise typer.Exit(code=1) from None
    if not is_main_process():
        return
    metrics = get_task(train_config.env).metrics
    last, base = summary.metrics[-1], summary.metrics[0]
    changes = [
        f"{metric.label} {base[metric.test_key]:.4f} -> {last.get(metric.test_key, float('nan')):.4f}"
        for metric in metrics
        if metric.test_key in base
    ]
    typer.echo(f"done: {summary.run_dir}  test {', '.join(changes)}")  # plain, unwrapped: the path on one line
    final = _final_scores(summary.run_dir, metrics)
    if final is not None:
        typer.echo(final)


OWN_OPTIONS = [
    keyword_option("run_dir", Path, typer.Option(None, help="run directory [default: runs/<algo>-<env>-seed<seed>]")),
    keyword_option(
        "config", Path, typer.Option(None, "--config", help="TOML file of TrainConfig fields; options override it")
    ),
    keyword_option(
        "resume", Path, typer.Option(None, help="continue the run in this directory from its last checkpoint")
    ),
    keyword_option("overwrite", bool, typer.Option(False, help="replace an existing run directory")),
]
"""``train``'s options that are not TrainConfig fields, listed after the fields' (:func:`config_options`)."""
app.command("train")(with_parameters(train_command, config_options() + OWN_OPTIONS))


def _final_scores(run_dir: Path, metrics: tuple[Metric, ...]) -> str | None:
    """One line of the final evaluation against the base model on the same noise (eval/final.json, eval/base.json).

    Args:
        run_dir: the run directory.
        metrics: the task's metrics; each one both files hold is shown, in order.
    """
    import json

    try:
        base, final = (json.loads((run_dir / "eval" / name).read_text()) for name in ("base.json", "final.json"))
    except (OSError, ValueError):
        return None
    protocol = final.get("protocol", {})
    parts = [
        f"{metric.label} {base['summary'][metric.mean]:.4f} -> {final['summary'][metric.mean]:.4f}"
        for metric in metrics
        if metric.mean in base.get("summary", {}) and metric.mean in final.get("summary", {})
    ]
    return (
        f"final evaluation ({protocol.get('num_steps')}-step ODE, {protocol.get('samples_per_prompt')} samples per "
        f"test prompt, the base model on the same noise): " + ", ".join(parts)
    )


def _run(config: TrainConfig, directory: Path, *, resume: bool, overwrite: bool):
    from creditzoo.cli.terminal import TrainProgress
    from creditzoo.learner.run import train

    description = f"{config.algo} on {config.env}"
    test_metric = get_task(config.env).primary.test_key  # the test score the progress line shows
    with TrainProgress(
        description, config.iterations, console=console, enabled=is_main_process(), test_metric=test_metric
    ) as progress:

        def report(iteration: int, total: int, metrics: dict) -> None:
            progress.update(iteration, metrics)

        try:
            return train(config, directory, resume=resume, overwrite=overwrite, progress=report)
        finally:
            import torch.distributed

            if torch.distributed.is_available() and torch.distributed.is_initialized():
                torch.distributed.destroy_process_group()  # joined by train() under accelerate launch / torchrun


@app.command("envs")
def envs_command(
    wide: bool = typer.Option(False, "--wide", help="one long line per environment, never wrapped"),
) -> None:
    """List the environments (tasks): name and gymnasium id, then what the task is and the metrics it reports."""
    from creditzoo.cli.terminal import echo_wrapped, text_width
    from creditzoo.envs import env_ids
    from creditzoo.tasks import get_task

    ids = env_ids()
    width, column = text_width(), max(len(name) for name in ids)
    for name, gym_id in ids.items():
        task = get_task(name)
        names = [f"{m.mean} (primary)" if m.name == task.primary_metric else m.mean for m in task.metrics]
        metrics = f"metrics: {', '.join(names)}"
        if wide:
            typer.echo(f"{name:<{column}}  {gym_id:<26} {task.description}  {metrics}")
            continue
        typer.echo(f"{name:<{column}}  {gym_id}")
        echo_wrapped(task.description, width)
        echo_wrapped(metrics, width, hang="         ")
