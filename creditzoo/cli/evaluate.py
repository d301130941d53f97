"""``creditzoo eval``: sample a task's test prompts with the ODE sampler and report per-category scores."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from creditzoo.cli.app import app, fail
from creditzoo.tasks import TASKS

DEFAULT_GRID = Path("eval_samples.png")



def _load_model(task_name: str, lora: Path | None):  # noqa: ANN202 - returns a FlowModel
    import torch

    from creditzoo.models import load_model
    from creditzoo.tasks import get_task

    task = get_task(task_name)
    if task.default_model is None:
        fail(f"task {task_name!r} has no default model to evaluate")
    try:
        model = load_model(task.default_model, device=torch.device("cpu"))
    except (FileNotFoundError, ValueError) as error:
        fail(f"cannot load the model of {task_name!r}: {error}")
    if lora is not None:
        from peft import PeftModel

        try:
            model = PeftModel.from_pretrained(model, str(lora))
        except (OSError, ValueError) as error:
            fail(f"cannot load the LoRA adapter at {lora}: {error}".splitlines()[0])
        model.eval()
    return task, model


@app.command("eval")
def eval_command(
    env: Annotated[str, typer.Option(help="Task to evaluate on (see creditzoo.tasks.TASKS).")] = "geneval",
    lora: Annotated[
        Optional[Path], typer.Option(help="peft LoRA adapter directory (saved with save_pretrained).")
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
) -> None:
    """Evaluate the task's model (optionally with a LoRA adapter) on its held-out test prompts."""
    if env not in TASKS:
        fail(f"unknown env {env!r}; valid envs: {', '.join(sorted(TASKS))}")
    if lora is not None and not (lora.is_dir() and (lora / "adapter_config.json").is_file()):
        fail(f"--lora {lora} is not a peft adapter directory (no adapter_config.json there)")
    from creditzoo.learner.evaluate import EvalConfig, evaluate, save_grid

    try:
        config = EvalConfig(
            num_steps=steps,
            guidance_scale=guidance_scale,
            samples_per_prompt=samples_per_prompt,
            min_images_per_category=min_images_per_category,
            seed=seed,
            batch_size=batch_size,
        )
    except ValueError as error:
        fail(str(error))
    task, model = _load_model(env, lora)
    try:
        result = evaluate(model, task, config)
    except ValueError as error:
        fail(str(error))
    first = sorted({prompt: i for i, prompt in reversed(list(enumerate(result.prompts)))}.values())  # 1/prompt
    grid = save_grid(result.images[first], [result.prompts[i] for i in first], out, marks=result.strict[first] > 0.5)
    if json_output:
        typer.echo(result.to_json())
        return
    from rich.console import Console
    from rich.table import Table

    title = f"{env}: {steps}-step ODE, guidance {guidance_scale:g}, {samples_per_prompt} samples/prompt"
    table = Table(title=f"{title}, >= {min_images_per_category} images/category")
    extra = result.extra_object_rate is not None
    columns = ("category", "images", "strict accuracy", "partial score") + (("extra objects",) if extra else ())
    for column in columns:
        table.add_column(column, justify="left" if column == "category" else "right")
    for name, row in result.per_category.items():
        rate = (f"{row['extra_object_rate']:.3f}",) if extra else ()
        table.add_row(name, str(row["count"]), f"{row['strict_accuracy']:.3f}", f"{row['partial_score']:.3f}", *rate)
    table.add_row(
        "overall (category mean)",
        str(len(result.prompts)),
        f"{result.strict_accuracy:.3f}",
        f"{result.partial_score:.3f}",
        *((f"{result.extra_object_rate:.3f}",) if extra else ()),
        style="bold",
    )
    console = Console()
    console.print(table)
    console.print(f"sample grid: {grid}")
