"""A training run: the run directory, the iteration loop, evaluation, checkpoints and resuming.

Every iteration draws its randomness from (seed, iteration) alone, and the learner's whole state (LoRA weights,
AdamW moments) is checkpointed, so a run resumed from its last checkpoint repeats exactly what an uninterrupted
run would have done (on the same device and torch build).

Under ``accelerate launch`` / ``torchrun`` (N processes, :mod:`creditzoo.learner.distributed`) every process
trains, but only the main process prepares the run directory, evaluates and writes the metrics, records,
evaluation grids and checkpoints; the others wait for it and receive its outcome (an error included), and every
process resumes from the same checkpoint.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from creditzoo.learner.checkpoint import (
    atomic_write_json,
    latest_checkpoint,
    read_metrics,
    save_checkpoint,
    write_metrics,
    write_record,
)
from creditzoo.learner.config import TrainConfig
from creditzoo.learner.distributed import (
    Processes,
    check_split,
    from_environment,
    launched_world_size,
    process_device,
)
from creditzoo.learner.evaluate import EvalConfig, evaluate, grid_image
from creditzoo.learner.grpo import GRPOLearner, IterationResult
from creditzoo.learner.preflight import check_before_start, check_run_dir
from creditzoo.learner.tracking import NullTracker, Tracker, open_tracker
from creditzoo.models import load_model, parse_dtype
from creditzoo.tasks import Task, get_task

EVAL_SEED = 0  # every evaluation, base model included, sees the same noise: scores differ only by the weights


class RunDirectoryError(ValueError):
    """The run directory cannot be used as asked (exists, unwritable, nothing to resume)."""


@dataclass(frozen=True)
class RunSummary:
    """Where a run ended: its directory, last iteration and last metrics line."""

    run_dir: Path
    iteration: int
    metrics: list[dict]


def resolve_device(name: str) -> torch.device:
    """'auto' picks CUDA when available, else the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as error:
        raise ValueError(f"unknown device {name!r}; valid: auto, cpu, cuda, cuda:N") from error
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} asked for, but CUDA is not available; use --device cpu")
    return device


def load_task(config: TrainConfig) -> Task:
    """The configured task, drawing its prompts from ``config.prompts`` (TRAIN,TEST files) when given.

    Raises:
        ValueError: unknown task, or a prompt file that is missing or malformed (one line naming file and line).
    """
    from creditzoo.tasks.prompts import task_with_prompt_files

    task = get_task(config.env)
    return task if config.prompts is None else task_with_prompt_files(task, config.prompts)


def build_reward(task: Task, config: TrainConfig) -> object:
    """The training reward: the task's (or the named) reward, wrapped in a noise model if asked."""
    from creditzoo.rewards.noise import NoisyReward, parse_noise_spec

    reward = task.reward(config.reward)
    spec = parse_noise_spec(config.reward_noise) if config.reward_noise else None
    return NoisyReward(reward, spec, seed=config.seed)


def prepare_run_dir(run_dir: Path, *, overwrite: bool) -> None:
    """Create an empty run directory, refusing to clobber an existing one unless ``overwrite``."""
    if run_dir.exists() and not run_dir.is_dir():
        raise RunDirectoryError(f"run directory {str(run_dir)!r} exists and is not a directory")
    if run_dir.exists() and any(run_dir.iterdir()):
        if not overwrite:
            raise RunDirectoryError(
                f"run directory {str(run_dir)!r} already exists; pass --overwrite to replace it "
                f"or --resume {str(run_dir)!r} to continue it"
            )
        shutil.rmtree(run_dir)
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        probe = run_dir / ".write-test"
        probe.write_text("ok")
        probe.unlink()
    except OSError as error:
        raise RunDirectoryError(f"run directory {str(run_dir)!r} is not writable: {error.strerror}") from error


def load_run_config(run_dir: Path) -> TrainConfig:
    """The resolved configuration a run directory was started with."""
    import json

    path = run_dir / "config.json"
    if not path.exists():
        raise RunDirectoryError(f"nothing to resume: {str(path)!r} does not exist")
    return TrainConfig.from_dict(json.loads(path.read_text()))


def train(
    config: TrainConfig,
    run_dir: str | Path,
    *,
    resume: bool = False,
    overwrite: bool = False,
    progress: Callable[[int, int, dict], None] | None = None,
) -> RunSummary:
    """Train with GRPO and the configured credit-assignment algorithm.

    Args:
        config: the run's configuration (for a resume: the stored one, ``iterations`` may grow).
        run_dir: the run directory.
        resume: continue from the last checkpoint in ``run_dir``.
        overwrite: replace an existing ``run_dir`` (ignored with ``resume``).
        progress: called after every iteration with (iteration, total, metrics line).

    Returns:
        :class:`RunSummary`.
    """
    run_dir = Path(run_dir)
    check_run_dir(run_dir, resume=resume)  # before any work: a read-only directory, a path under a file
    task = load_task(config)
    check_split(config.prompts_per_iteration, launched_world_size())  # before joining the other processes
    device = process_device(resolve_device(config.device))
    processes = from_environment(device)
    spec = config.model or task.default_model
    if spec is None:
        raise ValueError(f"task {config.env!r} has no default model; give one with --model sd3:/path/to/sd3.5-medium")
    model = load_model(spec, device=device, dtype=parse_dtype(config.dtype), **config.model_options)
    # nothing is written (and an old run is not replaced) before everything that can be checked has been
    check_before_start(config, task, model, device, world_size=processes.world_size)
    learner = GRPOLearner(config, model, build_reward(task, config), task.train_prompts(), device, processes)
    start, lines = 0, []
    if resume:
        checkpoint = latest_checkpoint(run_dir)
        if checkpoint is not None:
            start = _restore(learner, checkpoint)
            lines = [line for line in read_metrics(run_dir) if line["iteration"] <= start]
        if start >= config.iterations:
            raise RunDirectoryError(
                f"nothing left to do: {str(run_dir)!r} is at iteration {start} and iterations is "
                f"{config.iterations}; pass --iterations N with N > {start} to continue it"
            )
    else:
        processes.on_main(prepare_run_dir, run_dir, overwrite=overwrite)
    processes.on_main(atomic_write_json, run_dir / "config.json", config.to_dict())
    tracker = _open_tracker(processes, config, run_dir, start)  # flushes on every call
    if start == 0:
        base = processes.on_main(_evaluate, learner, task, config, run_dir, 0, tracker, final=config.iterations == 0)
        lines = [{"iteration": 0, **base}]
        processes.on_main(write_metrics, run_dir, lines)
        processes.on_main(tracker.log_metrics, 0, lines[0])
    for iteration in range(start + 1, config.iterations + 1):
        result = learner.iteration(iteration)
        metrics = result.metrics
        lines.append(metrics)
        metrics.update(processes.on_main(_write_iteration, learner, task, config, run_dir, result, lines, tracker))
        if progress is not None and processes.is_main:
            progress(iteration, config.iterations, metrics)
    processes.on_main(tracker.close)
    processes.barrier()
    return RunSummary(run_dir=run_dir, iteration=config.iterations, metrics=lines)


def _open_tracker(processes: Processes, config: TrainConfig, run_dir: Path, start: int) -> Tracker:
    """The run's tracker on the main process (an error opening it is raised on every process); none elsewhere."""
    opened: list[Tracker] = []
    processes.on_main(lambda: opened.append(open_tracker(config.log, run_dir, config.to_dict(), start=start)))
    return opened[0] if opened else NullTracker()


def _write_iteration(
    learner: GRPOLearner,
    task: Task,
    config: TrainConfig,
    run_dir: Path,
    result: IterationResult,
    lines: list[dict],
    tracker: Tracker,
) -> dict:
    """Evaluate when due, write the record and the metrics, mirror them, checkpoint when due; return the scores."""
    iteration = result.metrics["iteration"]
    last = iteration == config.iterations
    scores = {}
    if last or (config.eval_every and iteration % config.eval_every == 0):
        scores = _evaluate(learner, task, config, run_dir, iteration, tracker, final=last)
        result.metrics.update(scores)
    write_record(run_dir, iteration, result.record, result.prompts, result.shape)
    write_metrics(run_dir, lines)
    tracker.log_metrics(iteration, result.metrics)
    if last or iteration % config.checkpoint_every == 0:
        state = {"iteration": iteration, "optimizer": learner.optimizer.state_dict()}
        save_checkpoint(run_dir, iteration, learner.policy, state)
    return scores


def _restore(learner: GRPOLearner, checkpoint: Path) -> int:
    from safetensors.torch import load_file

    state = torch.load(checkpoint / "trainer_state.pt", weights_only=True)
    learner.load_adapter_state(load_file(str(checkpoint / "adapter_model.safetensors")))
    learner.optimizer.load_state_dict(state["optimizer"])
    return int(state["iteration"])


def _evaluate(
    learner: GRPOLearner,
    task: Task,
    config: TrainConfig,
    run_dir: Path,
    iteration: int,
    tracker: Tracker,
    *,
    final: bool,
):
    eval_config = EvalConfig(
        num_steps=config.eval_steps,
        guidance_scale=config.guidance_scale,
        samples_per_prompt=config.eval_samples_per_prompt,
        min_images_per_category=config.eval_min_images_per_category,
        seed=EVAL_SEED,
        shift=learner.shift,
    )
    result = evaluate(learner.policy, task, eval_config)
    summary = result.to_dict()
    atomic_write_json(run_dir / "eval" / f"iter_{iteration:06d}.json", summary)
    first = [result.prompts.index(prompt) for prompt in dict.fromkeys(result.prompts)][:48]  # one per prompt
    grid = grid_image(result.images[first], [result.prompts[i] for i in first])
    tracker.log_evaluation(iteration, summary, grid)
    if final:
        atomic_write_json(run_dir / "eval" / "final.json", summary)
        grid.save(run_dir / "eval" / "final.png")
    scores = {"test_strict_accuracy": result.strict_accuracy, "test_partial_score": result.partial_score}
    if result.extra_object_rate is not None:
        scores["test_extra_object_rate"] = result.extra_object_rate
    return scores
