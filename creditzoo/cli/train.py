"""``creditzoo train``: GRPO with any algorithm of the zoo, on any environment; ``creditzoo envs``."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import Any

import typer

from creditzoo.cli.app import app, console, error_console, fail, is_main_process
from creditzoo.learner.config import OPTION_ALIASES, TrainConfig

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

# command-line option -> TrainConfig field, where the names differ
RENAMED = OPTION_ALIASES


def _help(name: str) -> str:
    return TrainConfig.__dataclass_fields__[name].metadata["help"]


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


@app.command("train")
def train_command(
    algo: str = typer.Option(None, help=_help("algo") + " [default: tp_grpo_strict]"),
    env: str = typer.Option(None, help=_help("env") + " [default: geneval]"),
    model: str = typer.Option(None, help=_help("model")),
    dtype: str = typer.Option(None, help=_help("dtype") + " [default: float32]"),
    max_batch: int = typer.Option(None, help=_help("max_batch")),
    decode_batch: int = typer.Option(None, help=_help("decode_batch")),
    gradient_checkpointing: bool = typer.Option(
        None, "--gradient-checkpointing/--no-gradient-checkpointing", help=_help("gradient_checkpointing")
    ),
    iterations: int = typer.Option(None, help=_help("iterations")),
    prompts_per_iteration: int = typer.Option(None, help=_help("prompts_per_iteration")),
    group_size: int = typer.Option(None, help=_help("group_size")),
    steps: int = typer.Option(None, help=_help("num_steps")),
    shift: float = typer.Option(None, help=_help("shift")),
    window: int = typer.Option(None, help=_help("window_size")),
    window_start: int = typer.Option(None, help=_help("window_start")),
    window_schedule: str = typer.Option(None, help=_help("window_schedule")),
    train_steps: str = typer.Option(None, help=_help("train_steps")),
    step_weight: str = typer.Option(None, help=_help("step_weight")),
    sde: str = typer.Option(None, help=_help("sde_kind")),
    noise_level: float = typer.Option(None, help=_help("noise_level")),
    cps_log_prob: str = typer.Option(None, help=_help("cps_log_prob")),
    completion: str = typer.Option(None, help=_help("completion")),
    guidance_scale: float = typer.Option(None, help=_help("guidance_scale")),
    beta: float = typer.Option(None, help=_help("beta")),
    lr: float = typer.Option(None, help=_help("learning_rate")),
    lora_rank: int = typer.Option(None, help=_help("lora_rank")),
    clip_range: float = typer.Option(None, help=_help("clip_range")),
    updates_per_iteration: int = typer.Option(None, help=_help("updates_per_iteration")),
    std_mode: str = typer.Option(None, help=_help("std_mode")),
    reward: str = typer.Option(None, help=_help("reward")),
    reward_noise: str = typer.Option(None, help=_help("reward_noise")),
    reward_repeats: int = typer.Option(None, help=_help("reward_repeats") + " [default: 1]"),
    reward_noise_sd: str = typer.Option(None, help=_help("reward_noise_sd") + " [default: 0]"),
    prompts: str = typer.Option(None, help=_help("prompts")),
    eval_every: int = typer.Option(None, help=_help("eval_every")),
    eval_samples_per_prompt: int = typer.Option(None, help=_help("eval_samples_per_prompt")),
    eval_min_images_per_category: int = typer.Option(None, help=_help("eval_min_images_per_category")),
    eval_steps: int = typer.Option(None, help=_help("eval_steps")),
    final_eval_steps: int = typer.Option(None, help=_help("final_eval_steps") + " [default: 40]"),
    final_eval_samples: int = typer.Option(None, help=_help("final_eval_samples") + " [default: 4]"),
    inner_epochs: int = typer.Option(None, help=_help("inner_epochs")),
    lora_alpha: float = typer.Option(None, help=_help("lora_alpha")),
    weight_decay: float = typer.Option(None, help=_help("weight_decay")),
    adv_clip: float = typer.Option(None, help=_help("adv_clip")),
    max_grad_norm: float = typer.Option(None, help=_help("max_grad_norm")),
    checkpoint_every: int = typer.Option(None, help=_help("checkpoint_every")),
    seed: int = typer.Option(None, help=_help("seed")),
    device: str = typer.Option(None, help=_help("device")),
    log: list[str] = typer.Option(None, help=_help("log")),
    run_dir: Path = typer.Option(None, help="run directory [default: runs/<algo>-<env>-seed<seed>]"),
    config: Path = typer.Option(None, "--config", help="TOML file of TrainConfig fields; options override it"),
    resume: Path = typer.Option(None, help="continue the run in this directory from its last checkpoint"),
    overwrite: bool = typer.Option(False, help="replace an existing run directory"),
) -> None:
    """Train the environment's model with GRPO and the chosen credit-assignment algorithm."""
    from creditzoo.learner.distributed import check_split, launched_world_size
    from creditzoo.learner.grpo import NonFiniteRewardError
    from creditzoo.learner.run import load_run_config, resolve_device
    from creditzoo.learner.tracking import check_available

    given = {k: v for k, v in locals().items() if k not in ("run_dir", "config", "resume", "overwrite")}
    given = {k: v for k, v in given.items() if k in {f.name for f in dataclasses.fields(TrainConfig)} | set(RENAMED)}
    given["log"] = log or None  # typer gives [] for a list option not given
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
    last = summary.metrics[-1]
    base = summary.metrics[0]
    if not is_main_process():
        return
    typer.echo(  # plain and unwrapped: the run directory is printed literally, on one line
        f"done: {summary.run_dir}  test partial score {base['test_partial_score']:.4f} -> "
        f"{last.get('test_partial_score', float('nan')):.4f}, strict accuracy {base['test_strict_accuracy']:.4f} -> "
        f"{last.get('test_strict_accuracy', float('nan')):.4f}"
    )
    final = _final_scores(summary.run_dir)
    if final is not None:
        typer.echo(final)


def _final_scores(run_dir: Path) -> str | None:
    """One line of the final evaluation against the base model on the same noise (eval/final.json, eval/base.json)."""
    import json

    try:
        base, final = (json.loads((run_dir / "eval" / name).read_text()) for name in ("base.json", "final.json"))
    except (OSError, ValueError):
        return None
    protocol = final.get("protocol", {})
    parts = [
        f"{name.replace('_', ' ')} {base['summary'][name]:.4f} -> {final['summary'][name]:.4f}"
        for name in ("partial_score", "strict_accuracy", "extra_object_rate")
        if name in base.get("summary", {}) and name in final.get("summary", {})
    ]
    return (
        f"final evaluation ({protocol.get('num_steps')}-step ODE, {protocol.get('samples_per_prompt')} samples per "
        f"test prompt, the base model on the same noise): " + ", ".join(parts)
    )


def _run(config: TrainConfig, directory: Path, *, resume: bool, overwrite: bool):
    from creditzoo.cli.terminal import TrainProgress
    from creditzoo.learner.run import train

    description = f"{config.algo} on {config.env}"
    with TrainProgress(description, config.iterations, console=console, enabled=is_main_process()) as progress:

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
    """List the environments (tasks): name and gymnasium id, then what the task is."""
    from creditzoo.cli.terminal import echo_wrapped, text_width
    from creditzoo.envs import env_ids
    from creditzoo.tasks import get_task

    ids = env_ids()
    width, column = text_width(), max(len(name) for name in ids)
    for name, gym_id in ids.items():
        task = get_task(name)
        if wide:
            typer.echo(f"{name:<{column}}  {gym_id:<26} {task.description}")
            continue
        typer.echo(f"{name:<{column}}  {gym_id}")
        echo_wrapped(task.description, width)
