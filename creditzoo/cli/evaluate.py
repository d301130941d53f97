"""``creditzoo eval``: sample a task's test prompts with the ODE sampler and report per-category scores."""

from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Optional

import typer

from creditzoo.cli.app import app, fail
from creditzoo.tasks import TASKS

DEFAULT_GRID = Path("eval_samples.png")


@dataclass(frozen=True)
class _Target:
    """What to evaluate: the task (with its prompts), the model spec and how to load it, and the adapter."""

    task: object
    spec: str
    dtype: str
    device: str
    model_options: dict
    shift: float | None
    lora: Path | None


def _target(
    env: str | None,
    run: Path | None,
    lora: Path | None,
    model: str | None,
    dtype: str | None,
    device: str | None,
    shift: float | None,
) -> _Target:
    """Resolve the options: those given, then the run's config.json (with --run), then the task's defaults.

    A shift of None means the model's own default, known once it is loaded.
    """
    from creditzoo.learner.checkpoint import latest_checkpoint
    from creditzoo.learner.run import RunDirectoryError, load_run_config, load_task
    from creditzoo.tasks import get_task

    if run is None:
        name = env or "geneval"
        if name not in TASKS:
            fail(f"unknown env {name!r}; valid envs: {', '.join(sorted(TASKS))}")
        task = get_task(name)
        if model is None and task.default_model is None:
            fail(f"task {name!r} has no default model; give one with --model sd3:/path/to/weights")
        spec = model or task.default_model
        return _Target(task, spec, dtype or "float32", device or "auto", {}, shift, lora)  # type: ignore[arg-type]
    try:
        config = load_run_config(run)
        task = load_task(config)
    except (RunDirectoryError, ValueError) as error:
        fail(f"--run {run}: {str(error).splitlines()[0]}")
    if env is not None and env != config.env:
        fail(f"--env {env} does not match the run's env {config.env!r} ({run / 'config.json'})")
    if lora is None:
        lora = latest_checkpoint(run)
        if lora is None:
            fail(f"--run {run} holds no checkpoint yet (no checkpoints/iter_*); evaluate the base model without it")
    spec = model or config.model or task.default_model
    if spec is None:
        fail(f"the run's task {config.env!r} has no default model; give one with --model")
    return _Target(
        task=task,
        spec=spec,
        dtype=dtype or config.dtype,
        device=device or config.device,
        model_options=dict(config.model_options) if model is None else {},
        shift=config.shift if shift is None else shift,
        lora=lora,
    )


def _load_model(target: _Target):  # noqa: ANN202 - returns a FlowModel
    from creditzoo.learner.checkpoint import CheckpointError, load_adapter_file
    from creditzoo.learner.run import resolve_device
    from creditzoo.models import load_model, parse_dtype

    if target.lora is not None:  # before the model loads: a truncated or corrupt file is one line naming it
        try:
            load_adapter_file(target.lora / "adapter_model.safetensors")
        except CheckpointError as error:
            fail(f"cannot load the LoRA adapter: {error}")
    try:
        device = resolve_device(target.device)
        model = load_model(target.spec, device=device, dtype=parse_dtype(target.dtype), **target.model_options)
    except (FileNotFoundError, ValueError) as error:
        fail(f"cannot load the model {target.spec!r}: {error}")
    if target.lora is not None:
        from peft import PeftModel

        try:
            model = PeftModel.from_pretrained(model, str(target.lora))
        except (OSError, ValueError) as error:
            fail(f"cannot load the LoRA adapter at {target.lora}: {error}".splitlines()[0])
        model.eval()
    return model


def _check_grid_path(out: Path) -> None:
    """One line and exit 2 unless the grid can be written to ``out``: a writable folder, an image file name."""
    from PIL import Image

    from creditzoo.learner.preflight import check_output_file
    from creditzoo.messages import shown

    try:
        check_output_file(out, "--out")
    except ValueError as error:
        fail(str(error))
    Image.init()
    writable = sorted(ext for ext, name in Image.registered_extensions().items() if name in Image.SAVE)
    if out.suffix.lower() not in writable:
        fail(f"--out {shown(str(out))} is not an image file name; valid endings include .png, .jpg, .webp")


@app.command("eval")
def eval_command(
    env: Annotated[
        Optional[str], typer.Option(help="Task to evaluate on (see creditzoo.tasks.TASKS; default geneval).")
    ] = None,
    run: Annotated[
        Optional[Path],
        typer.Option(help="A run directory: its task, prompts, model, dtype, device, shift and newest adapter."),
    ] = None,
    lora: Annotated[
        Optional[Path], typer.Option(help="peft LoRA adapter directory (saved with save_pretrained).")
    ] = None,
    model: Annotated[
        Optional[str], typer.Option(help="Model spec: toy, toy:PATH, sd3:PATH, flux:PATH (default: the task's).")
    ] = None,
    dtype: Annotated[Optional[str], typer.Option(help="Weight dtype: float32, bfloat16 or float16.")] = None,
    device: Annotated[Optional[str], typer.Option(help="auto, cpu, cuda or cuda:N (default auto).")] = None,
    shift: Annotated[
        Optional[float], typer.Option(help="Time shift of the sigma grid (default: the run's, else the model's).")
    ] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print one JSON object instead of the table.")] = False,
    steps: Annotated[int, typer.Option(help="Euler ODE steps.")] = 40,
    samples_per_prompt: Annotated[int, typer.Option(help="Images per test prompt.")] = 8,
    min_images_per_category: Annotated[
        int, typer.Option(help="At least this many images per category (more samples for small ones).")
    ] = 32,
    seed: Annotated[int, typer.Option(help="Seed of the per-sample noise.")] = 0,
    guidance_scale: Annotated[float, typer.Option(help="Classifier-free guidance scale (1 = none).")] = 1.0,
    batch_size: Annotated[int, typer.Option(help="Images per model call.")] = 64,
    out: Annotated[Path, typer.Option(help="Where to write the PNG grid (one sample per prompt).")] = DEFAULT_GRID,
    records: Annotated[
        Optional[Path],
        typer.Option(help="Also write the per-image scores to this JSON file (the format of eval/final.json)."),
    ] = None,
    final: Annotated[
        bool,
        typer.Option(
            "--final",
            help="With --run: the run's final evaluation (its final_eval_steps / final_eval_samples, ignoring "
            "--steps and --samples-per-prompt), written to RUN_DIR/eval/final.json and base.json.",
        ),
    ] = False,
) -> None:
    """Evaluate the task's model (optionally with a LoRA adapter) on its held-out test prompts."""
    if lora is not None and not (lora.is_dir() and (lora / "adapter_config.json").is_file()):
        fail(f"--lora {lora} is not a peft adapter directory (no adapter_config.json there)")
    if final:
        _final_command(run, lora, model, dtype, device, shift, json_output)
        return
    from creditzoo.learner.evaluate import EvalConfig, evaluate, save_grid

    _check_grid_path(out)  # before the model loads and the evaluation runs, not after
    try:
        config = EvalConfig(
            num_steps=steps,
            guidance_scale=guidance_scale,
            samples_per_prompt=samples_per_prompt,
            min_images_per_category=min_images_per_category,
            seed=seed,
            batch_size=batch_size,
            shift=1.0 if shift is None else shift,
        )
    except ValueError as error:
        fail(str(error))
    target = _target(env, run, lora, model, dtype, device, shift)
    task = target.task
    flow_model = _load_model(target)
    # the shift: the one given, else the run's, else the model's own (SD3.5's scheduler: 3; toy and FLUX: 1)
    default_shift = float(flow_model.default_shift)
    config = dataclasses.replace(config, shift=default_shift if target.shift is None else target.shift)
    try:
        result = evaluate(flow_model, task, config)
    except ValueError as error:
        fail(str(error))
    first = sorted({prompt: i for i, prompt in reversed(list(enumerate(result.prompts)))}.values())  # 1/prompt
    correct = result.correct()  # frames: green where the task's first correctness metric holds, red elsewhere
    marks = None if correct is None else correct[first]
    grid = save_grid(result.images[first], [result.prompts[i] for i in first], out, marks=marks)
    if records is not None:
        _write_records(records, result.to_record(config.protocol("cli", task.name), task.name, adapter=_name(target)))
    if json_output:
        typer.echo(result.to_json())
        return
    from rich.console import Console
    from rich.table import Table

    title = f"{task.name}: {steps}-step ODE, guidance {guidance_scale:g}, {samples_per_prompt} samples/prompt"
    table = Table(title=f"{title}, >= {min_images_per_category} images/category")
    means = [metric.mean for metric in result.metrics]
    for column in ("category", "images", *(metric.label for metric in result.metrics)):
        table.add_column(column, justify="left" if column == "category" else "right")
    for name, row in result.per_category.items():
        table.add_row(name, str(row["count"]), *(f"{row[mean]:.3f}" for mean in means))
    overall = (f"{result.summary[mean]:.3f}" for mean in means)
    table.add_row("overall (category mean)", str(len(result.prompts)), *overall, style="bold")
    console = Console(markup=False, emoji=False)  # prompts and paths are printed literally
    console.print(table)
    console.print(f"sample grid: {grid}")


def _name(target: _Target) -> str | None:
    """The adapter's path as given (None for the base model)."""
    return None if target.lora is None else str(target.lora)


def _write_records(path: Path, record: dict) -> None:
    from creditzoo.learner.run import write_evaluation_record

    try:
        write_evaluation_record(path, record)
    except OSError as error:
        fail(f"cannot write --records {path}: {error.strerror}")


def _final_command(
    run: Path | None,
    lora: Path | None,
    model: str | None,
    dtype: str | None,
    device: str | None,
    shift: float | None,
    json_output: bool,
) -> None:
    """``eval --run DIR --final``: the run's final evaluation and its base model's, as training writes them."""
    from creditzoo.learner.run import complete_final_evaluation, load_run_config

    if run is None:
        fail("--final needs --run RUN_DIR (it writes RUN_DIR/eval/final.json and RUN_DIR/eval/base.json)")
    target = _target(None, run, lora, model, dtype, device, shift)
    match = re.fullmatch(r"iter_(\d+)", target.lora.name) if target.lora is not None else None
    if match is None:
        fail(f"--final needs a run checkpoint named iter_NNNNNN, got {target.lora}")
    config = load_run_config(run)
    iteration = int(match.group(1))
    if iteration != config.iterations:
        fail(
            f"--final evaluates the run's last checkpoint: {target.lora} is iteration {iteration} "
            f"of {config.iterations}"
        )
    flow_model = _load_model(target)
    resolved = float(flow_model.default_shift) if target.shift is None else target.shift
    scores = complete_final_evaluation(flow_model, target.task, config, run, iteration, resolved)
    if json_output:
        typer.echo(json.dumps(scores))
        return
    shown = ", ".join(f"{metric.label} {scores[f'final_{metric.test_key}']:.4f}" for metric in target.task.metrics)
    typer.echo(
        f"final evaluation of {run} (iteration {iteration}): {shown}; written to {run / 'eval' / 'final.json'} "
        f"and {run / 'eval' / 'base.json'}"
    )
