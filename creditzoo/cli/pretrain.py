"""``creditzoo pretrain``: train the embedded toy flow model from a seed and write its safetensors."""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path
from typing import Annotated

import typer

from creditzoo.cli.app import app, fail
from creditzoo.tasks import TASKS

DEFAULT_OUT = Path("creditzoo/assets/toy_geneval.safetensors")


@app.command("pretrain")
def pretrain_command(
    env: Annotated[str, typer.Option(help="Task to pretrain on (see creditzoo.tasks.TASKS).")] = "geneval",
    steps: Annotated[int, typer.Option(help="Optimiser steps (the run's only length limit).")] = 4000,
    seed: Annotated[int, typer.Option(help="Seeds the initial weights and every random draw.")] = 0,
    batch_size: Annotated[int, typer.Option(help="Scenes per step.")] = 64,
    lr: Annotated[float, typer.Option(help="Peak AdamW learning rate.")] = 1e-3,
    threads: Annotated[
        int, typer.Option(help="torch CPU threads (results are bit-exact only for the same count).")
    ] = 2,
    out: Annotated[Path, typer.Option(help="Where to write the safetensors weights.")] = DEFAULT_OUT,
) -> None:
    """Pretrain the toy flow model deterministically from SEED and save it (config in the metadata)."""
    import torch
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from creditzoo.models.toy import save_toy_model
    from creditzoo.pretrain import PretrainConfig, pretrain, pretrainable_tasks

    if env not in TASKS:
        fail(f"unknown env {env!r}; valid envs: {', '.join(sorted(TASKS))}")
    if env not in pretrainable_tasks():
        fail(f"env {env!r} has no scene renderer to pretrain on; pretrainable: {', '.join(pretrainable_tasks())}")
    if threads < 1:
        fail(f"--threads must be >= 1, got {threads}")
    try:
        config = PretrainConfig(env=env, steps=steps, seed=seed, batch_size=batch_size, lr=lr)
    except ValueError as error:
        fail(str(error))
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        probe = out.with_name(out.name + ".write-test")
        probe.write_text("ok")
        probe.unlink()
    except OSError as error:
        fail(f"cannot write --out {str(out)!r}: {error.strerror}")
    torch.set_num_threads(threads)
    columns = (TextColumn("pretrain"), BarColumn(), MofNCompleteColumn(), TextColumn("loss {task.fields[loss]:.4f}"))
    with Progress(*columns, TimeRemainingColumn(), transient=False) as bar:
        handle = bar.add_task("pretrain", total=config.steps, loss=float("nan"))

        def progress(step: int, total: int, loss: float) -> None:
            bar.update(handle, completed=step, loss=loss)

        model, stats = pretrain(config, progress=progress)
    metadata = {
        "command": shlex.join(["creditzoo", *sys.argv[1:]]),
        "pretrain_config": json.dumps(config.__dict__),
        "threads": str(threads),
        "seconds": f"{stats.seconds:.1f}",
        "final_loss": f"{stats.final_loss:.5f}",
        "loss_curve": json.dumps(stats.loss_curve),
    }
    save_toy_model(model, out, metadata=metadata)
    params = sum(p.numel() for p in model.parameters())
    typer.echo(
        f"wrote {out} ({params:,} parameters, {stats.steps} steps, {stats.seconds:.0f} s, "
        f"final loss {stats.final_loss:.4f})"
    )
