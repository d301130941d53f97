"""A training run: the run directory, the iteration loop, evaluation, checkpoints and resuming.

Every iteration draws its randomness from (seed, iteration) alone, and the learner's whole state (LoRA weights,
AdamW moments) is checkpointed, so a run resumed from its last checkpoint repeats exactly what an uninterrupted
run would have done (on the same device and torch build).

Under ``accelerate launch`` / ``torchrun`` (N processes, :mod:`creditzoo.learner.distributed`) every process
trains, but only the main process prepares the run directory, evaluates and writes the metrics, records,
evaluation grids and checkpoints; the others wait for it and receive its outcome (an error included), and every
process resumes from the same checkpoint.

One process writes a run directory at a time: the main process holds ``RUN_DIR/.lock`` for the whole run
(:mod:`creditzoo.learner.rundir`), and a resume falls back past damaged checkpoints to the newest one that loads.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from creditzoo.learner.checkpoint import (
    CheckpointError,
    atomic_write_bytes,
    atomic_write_json,
    checkpoint_dirs,
    load_adapter_file,
    load_trainer_state,
    read_metrics,
    save_checkpoint,
    write_metrics,
    write_record,
)
from creditzoo.learner.config import TrainConfig, stored_values
from creditzoo.learner.distributed import (
    Processes,
    check_split,
    from_environment,
    launched_world_size,
    process_device,
)
from creditzoo.learner.evaluate import EvalConfig, EvalResult, evaluate, grid_image, record_json
from creditzoo.learner.grpo import GRPOLearner, IterationResult
from creditzoo.learner.preflight import check_before_start, check_run_dir
from creditzoo.learner.rundir import LOCK_NAME, RunLock, clear_run_dir, lock_run_dir, remove_temporaries, warn
from creditzoo.learner.tracking import NullTracker, Tracker, open_tracker
from creditzoo.models import load_model, parse_dtype
from creditzoo.tasks import Task, get_task

EVAL_SEED = 0  # the noise table's seed: every evaluation of a task, base model included, starts from the same noise


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
    """The training reward: the task's (or the named) reward, wrapped in a noise model if asked, repeated N times."""
    from creditzoo.rewards.noise import NoisyReward

    reward = task.reward(config.reward)
    return NoisyReward(reward, config.noise_spec, seed=config.seed, repeats=config.reward_repeats)


def prepare_run_dir(run_dir: Path, *, overwrite: bool) -> None:
    """Create an empty run directory, refusing to clobber an existing one unless ``overwrite``."""
    if run_dir.exists() and not run_dir.is_dir():
        raise RunDirectoryError(f"run directory {str(run_dir)!r} exists and is not a directory")
    if run_dir.exists() and any(child.name != LOCK_NAME for child in run_dir.iterdir()):
        if not overwrite:
            raise RunDirectoryError(
                f"run directory {str(run_dir)!r} already exists; pass --overwrite to replace it "
                f"or --resume {str(run_dir)!r} to continue it"
            )
        clear_run_dir(run_dir)  # everything but the lock this process holds
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        probe = run_dir / ".write-test"
        probe.write_text("ok")
        probe.unlink()
    except OSError as error:
        raise RunDirectoryError(f"run directory {str(run_dir)!r} is not writable: {error.strerror}") from error


def load_run_config(run_dir: Path) -> TrainConfig:
    """The resolved configuration a run directory was started with (``config.json`` less provenance and notes)."""
    import json

    if not run_dir.exists():
        raise RunDirectoryError(f"run directory {str(run_dir)!r} does not exist")
    if not run_dir.is_dir():
        raise RunDirectoryError(f"{str(run_dir)!r} is not a run directory (not a directory)")
    path = run_dir / "config.json"
    if not path.exists():
        raise RunDirectoryError(f"nothing to resume: {str(path)!r} does not exist")
    try:
        text = path.read_bytes().decode()
    except UnicodeDecodeError:
        raise RunDirectoryError(f"{str(path)!r} is not text (a damaged file?)") from None
    if not text.strip():
        raise RunDirectoryError(f"{str(path)!r} is empty (a damaged file?)")
    try:
        values = json.loads(text)
    except json.JSONDecodeError as error:
        raise RunDirectoryError(
            f"{str(path)!r} is not valid JSON ({error.msg} at line {error.lineno} column {error.colno})"
        ) from None
    if not isinstance(values, dict):
        raise RunDirectoryError(f"{str(path)!r} does not hold a JSON object of TrainConfig fields")
    values.pop("provenance", None)
    values.pop("notes", None)  # derived from the fields (TrainConfig.notes), written for readers
    try:
        return TrainConfig.from_dict(stored_values(values))
    except (ValueError, TypeError) as error:
        raise RunDirectoryError(f"{str(path)!r}: {str(error).splitlines()[0] if str(error) else error!r}") from None


def write_run_config(run_dir: Path, config: TrainConfig, device: torch.device, *, resume: bool) -> None:
    """Write ``config.json``: the configuration, its notes (:attr:`TrainConfig.notes`, if any) and its provenance.

    A resume keeps the provenance the run was started with and appends its own to ``"resumes"``.
    """
    import json

    from creditzoo import provenance

    current = provenance.collect(device)
    path = run_dir / "config.json"
    if resume and path.exists():
        record = provenance.with_resume(json.loads(path.read_text()).get("provenance"), current)
    else:
        record = {**current, "resumes": []}
    notes = {"notes": config.notes} if config.notes else {}
    atomic_write_json(path, {**config.to_dict(), **notes, "provenance": record})


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
        resume: continue from the newest checkpoint of ``run_dir`` that loads (damaged ones are skipped with a
            warning, see :func:`restore_newest_checkpoint`).
        overwrite: replace an existing ``run_dir`` (ignored with ``resume``).
        progress: called after every iteration with (iteration, total, metrics line).

    Returns:
        :class:`RunSummary`.

    Raises:
        RunLockedError: another live process writes ``run_dir`` (``RUN_DIR/.lock``); nothing was changed.
        RunDirectoryError: ``run_dir`` cannot be used as asked (exists, unwritable, damaged beyond resuming).
    """
    run_dir = Path(run_dir)
    check_run_dir(run_dir, resume=resume)  # before any work: a read-only directory, a path under a file
    task = load_task(config)
    check_split(config.prompts_per_iteration, launched_world_size())  # before joining the other processes
    device = process_device(resolve_device(config.device))
    processes = from_environment(device)
    lock = _become_sole_writer(processes, run_dir, resume=resume)
    try:
        return _train_as_writer(
            config, task, run_dir, device, processes, resume=resume, overwrite=overwrite, progress=progress
        )
    finally:
        if lock is not None:
            lock.release()


def _train_as_writer(
    config: TrainConfig,
    task: Task,
    run_dir: Path,
    device: torch.device,
    processes: Processes,
    *,
    resume: bool,
    overwrite: bool,
    progress: Callable[[int, int, dict], None] | None,
) -> RunSummary:
    """The body of :func:`train`, run while this process (the main one) holds the run directory's lock."""
    spec = config.model or task.default_model
    if spec is None:
        raise ValueError(f"task {config.env!r} has no default model; give one with --model sd3:/path/to/sd3.5-medium")
    model = load_model(spec, device=device, dtype=parse_dtype(config.dtype), **config.model_options)
    # nothing is written (and an old run is not replaced) before everything that can be checked has been
    check_before_start(config, task, model, device, world_size=processes.world_size)
    learner = GRPOLearner(config, model, build_reward(task, config), task.train_prompts(), device, processes)
    start, lines = 0, []
    if resume:
        lines = processes.on_main(read_metrics, run_dir, drop_truncated_tail=True)
        report = warn if processes.is_main else _quiet
        start = restore_newest_checkpoint(learner, run_dir, report, upto=_last_recorded(lines))
        lines = [line for line in lines if line["iteration"] <= start] if start else []  # later ones: recomputed
        if start == config.iterations and not processes.on_main(
            has_final_evaluation, run_dir, config, task, learner.shift
        ):  # a finished run without its final evaluation (made before it existed, or interrupted in it)
            processes.on_main(complete_final_evaluation, learner.policy, task, config, run_dir, start, learner.shift)
            processes.barrier()
            return RunSummary(run_dir=run_dir, iteration=start, metrics=read_metrics(run_dir))
        if start >= config.iterations:
            raise RunDirectoryError(
                f"nothing left to do: {str(run_dir)!r} is at iteration {start} and iterations is "
                f"{config.iterations}; pass --iterations N with N > {start} to continue it"
            )
    else:
        processes.on_main(prepare_run_dir, run_dir, overwrite=overwrite)
    processes.on_main(write_run_config, run_dir, config, device, resume=resume)
    tracker = _open_tracker(processes, config, run_dir, start, lines)  # flushes on every call
    if start == 0:
        base = processes.on_main(_evaluate, learner, task, config, run_dir, 0, tracker)
        lines = [{"iteration": 0, **base}]
        processes.on_main(write_metrics, run_dir, lines)
        processes.on_main(tracker.log_metrics, 0, _trackable(lines[0]))
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


def _open_tracker(processes: Processes, config: TrainConfig, run_dir: Path, start: int, history: list[dict]) -> Tracker:
    """The run's tracker on the main process (an error opening it is raised on every process); none elsewhere.

    A resumed run passes its kept metrics lines as ``history``: a backend that starts mirroring only now
    (``--resume --log tensorboard`` on a run trained without it) is given them first.
    """
    opened: list[Tracker] = []
    processes.on_main(
        lambda: opened.append(
            open_tracker(
                config.log, run_dir, config.to_dict(), start=start, history=[_trackable(line) for line in history]
            )
        )
    )
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
    """Evaluate when due, write the record and the metrics, mirror them, checkpoint when due; return the scores.

    After the last iteration the final evaluation runs before the last checkpoint is saved, so a run whose final
    checkpoint exists (a finished run, for a sweep) has its ``eval/final.json``.
    """
    iteration = result.metrics["iteration"]
    last = iteration == config.iterations
    scores = {}
    if last or (config.eval_every and iteration % config.eval_every == 0):
        scores = _evaluate(learner, task, config, run_dir, iteration, tracker)
    if last:
        scores.update(final_evaluation(learner.policy, task, config, run_dir, iteration, learner.shift))
    result.metrics.update(scores)
    write_record(run_dir, iteration, result.record, result.prompts, result.shape)
    write_metrics(run_dir, lines)
    tracker.log_metrics(iteration, _trackable(result.metrics))
    if last or iteration % config.checkpoint_every == 0:
        state = {"iteration": iteration, "optimizer": learner.optimizer.state_dict()}
        save_checkpoint(run_dir, iteration, learner.policy, state)
    return scores


def _trackable(metrics: dict) -> dict:
    """A metrics line less its protocol records (a tracker plots numbers; the protocol is in metrics.jsonl)."""
    return {key: value for key, value in metrics.items() if not key.endswith("eval_protocol")}


def _become_sole_writer(processes: Processes, run_dir: Path, *, resume: bool) -> RunLock | None:
    """Take the run directory's lock on the main process and clear a killed writer's leftovers; None elsewhere.

    Raises (on every process):
        RunDirectoryError: nothing to resume at ``run_dir``, or it cannot be written.
        RunLockedError: another live process writes ``run_dir``.
    """
    if resume and not run_dir.is_dir():
        raise RunDirectoryError(f"run directory {str(run_dir)!r} does not exist; nothing to resume")
    held: list[RunLock] = []

    def lock() -> None:
        try:
            held.append(lock_run_dir(run_dir))
        except OSError as error:
            raise RunDirectoryError(f"run directory {str(run_dir)!r} is not writable: {error.strerror}") from None
        try:
            for path in remove_temporaries(run_dir):
                warn(f"removed {path}, left half-written by a process that was killed")
        except BaseException:
            held[0].release()
            raise

    processes.on_main(lock)
    return held[0] if held else None


def restore_newest_checkpoint(
    learner: GRPOLearner, run_dir: Path, report: Callable[[str], None] = warn, *, upto: int | None = None
) -> int:
    """Load the newest checkpoint of ``run_dir`` whose files load into ``learner``; return its iteration.

    A checkpoint with a missing, truncated or corrupt adapter or trainer state is skipped with one line to
    ``report`` naming the file and the checkpoint used instead; so is one after iteration ``upto`` (the last
    metrics line kept). A ``checkpoints/latest`` that is missing or names another checkpoint is reported too:
    checkpoints are found by scanning ``checkpoints/iter_*``. Without any checkpoint directory the run starts at 0.

    Raises:
        RunDirectoryError: checkpoints exist but none of them can be resumed (naming the newest one's problem).
    """
    found = checkpoint_dirs(run_dir)
    pointer = run_dir / "checkpoints" / "latest"
    named = pointer.read_text(errors="replace").strip() if pointer.is_file() else None
    problems: list[str] = []
    for path in found:
        iteration = int(path.name.removeprefix("iter_"))
        if upto is not None and iteration > upto:
            last = f"iteration {upto}" if upto >= 0 else "none, not even iteration 0"
            problems.append(f"{path.name} is newer than the last intact line of metrics.jsonl ({last})")
            continue
        try:
            adapter = load_adapter_file(path / "adapter_model.safetensors")
            state = load_trainer_state(path / "trainer_state.pt")
            if state["iteration"] != iteration:
                raise CheckpointError(f"{path / 'trainer_state.pt'} holds iteration {state['iteration']}")
        except CheckpointError as error:
            problems.append(str(error))
            continue
        learner.load_adapter_state(adapter)
        learner.optimizer.load_state_dict(state["optimizer"])
        for problem in problems:
            report(f"{problem}; resuming from {path.name} instead")
        if not problems and named != path.name:
            said = f"names {named!r}" if named is not None else "is missing"
            report(f"{pointer} {said}; resuming from {path.name}, the newest complete checkpoint")
        return state["iteration"]
    if problems:
        raise RunDirectoryError(f"no checkpoint of {str(run_dir)!r} can be resumed: {problems[0]}")
    return 0


def _last_recorded(lines: list[dict]) -> int:
    """The last iteration n with metrics lines for all of 0..n (-1 when line 0 is missing)."""
    seen = {line["iteration"] for line in lines}
    last = -1
    while last + 1 in seen:
        last += 1
    return last


def _quiet(message: str) -> None:
    """Drop a warning (processes other than the main one: it reports for all)."""


def intermediate_eval_config(config: TrainConfig, shift: float) -> EvalConfig:
    """The protocol of the in-run evaluations (iteration 0, every ``eval_every``, the last iteration)."""
    return _eval_config(config, shift, config.eval_steps, config.eval_samples_per_prompt)


def final_eval_config(config: TrainConfig, shift: float) -> EvalConfig:
    """The protocol of a run's final evaluation and of its base model's (``eval/final.json``, ``eval/base.json``)."""
    return _eval_config(config, shift, config.final_eval_steps, config.final_eval_samples)


def _eval_config(config: TrainConfig, shift: float, steps: int, samples: int) -> EvalConfig:
    """An evaluation of ``steps`` ODE steps and ``samples`` per prompt on the run's guidance, shift and noise table."""
    return EvalConfig(
        num_steps=steps,
        guidance_scale=config.guidance_scale,
        samples_per_prompt=samples,
        min_images_per_category=config.eval_min_images_per_category,
        seed=EVAL_SEED,
        shift=shift,
    )


def final_evaluation(
    policy: torch.nn.Module, task: Task, config: TrainConfig, run_dir: Path, iteration: int, shift: float
) -> dict:
    """Evaluate the adapter and the base model with the final protocol and write their per-image records.

    Writes ``eval/final.json`` (the adapter of ``iteration``), ``eval/final.png`` and, unless it already holds
    this protocol's scores, ``eval/base.json`` (the same policy with its adapter disabled); both on the task's
    noise table, so that each image of one pairs with the same (prompt, sample) of the other.

    Args:
        policy: the peft-wrapped model (``disable_adapter()`` gives the base model).
        task: the run's task.
        config: the run's configuration (``final_eval_steps``, ``final_eval_samples``, ...).
        run_dir: the run directory.
        iteration: the iteration of the adapter's weights.
        shift: the time shift the run samples with.

    Returns:
        Each metric's final score under its metrics-line key (``final_test_MEAN``, e.g.
        ``final_test_partial_score``) and ``final_eval_protocol``.
    """
    eval_config = final_eval_config(config, shift)
    protocol = eval_config.protocol("final", task.name)
    result = evaluate(policy, task, eval_config)
    adapter = f"checkpoints/iter_{iteration:06d}"
    write_evaluation_record(
        run_dir / "eval" / "final.json", result.to_record(protocol, task.name, iteration=iteration, adapter=adapter)
    )
    grid_image(*_one_per_prompt(result)).save(run_dir / "eval" / "final.png")
    if _stored_protocol(run_dir / "eval" / "base.json") != protocol:
        with policy.disable_adapter():
            base = evaluate(policy, task, eval_config)
        write_evaluation_record(run_dir / "eval" / "base.json", base.to_record(protocol, task.name, iteration=0))
    scores = {f"final_{metric.test_key}": result.summary[metric.mean] for metric in task.metrics}
    return {**scores, "final_eval_protocol": protocol}


def write_evaluation_record(path: Path, record: dict) -> None:
    """Write an evaluation record with per-image scores atomically (:func:`~creditzoo.learner.evaluate.record_json`)."""
    atomic_write_bytes(path, record_json(record).encode("utf-8"))


def has_final_evaluation(run_dir: Path, config: TrainConfig, task: Task, shift: float) -> bool:
    """Whether ``eval/final.json`` and ``eval/base.json`` both hold the run's final protocol."""
    protocol = final_eval_config(config, shift).protocol("final", task.name)
    return all(_stored_protocol(run_dir / "eval" / name) == protocol for name in ("final.json", "base.json"))


def complete_final_evaluation(
    policy: torch.nn.Module, task: Task, config: TrainConfig, run_dir: Path, iteration: int, shift: float
) -> dict:
    """Run :func:`final_evaluation` for a finished run and put its scores into the last metrics line.

    For runs that finished before the final evaluation existed, or were interrupted while it ran. The metrics
    line is updated only when it is the line of ``iteration``.

    Returns:
        The scores :func:`final_evaluation` returns.
    """
    scores = final_evaluation(policy, task, config, run_dir, iteration, shift)
    lines = read_metrics(run_dir)
    if lines and lines[-1].get("iteration") == iteration:
        lines[-1].update(scores)
        write_metrics(run_dir, lines)
    return scores


def _stored_protocol(path: Path) -> object:
    """The ``protocol`` of an evaluation file, or None when the file is missing, unreadable or has none."""
    import json

    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return record.get("protocol") if isinstance(record, dict) else None


def _one_per_prompt(result: EvalResult) -> tuple[torch.Tensor, list[str]]:
    """The first sample of each of the first 48 prompts: images [n, 3, H, W] and their prompts."""
    first = [i for i, sample in enumerate(result.samples) if sample.sample_index == 0][:48]
    return result.images[first], [result.prompts[i] for i in first]


def _evaluate(
    learner: GRPOLearner,
    task: Task,
    config: TrainConfig,
    run_dir: Path,
    iteration: int,
    tracker: Tracker,
) -> dict:
    """An intermediate evaluation: write ``eval/iter_NNNNNN.json``, mirror it; return its metrics-line keys.

    The keys are ``test_MEAN`` for each metric of the task (:attr:`~creditzoo.tasks.Metric.test_key`), then
    ``eval_protocol``.
    """
    eval_config = intermediate_eval_config(config, learner.shift)
    protocol = eval_config.protocol("intermediate", task.name)
    result = evaluate(learner.policy, task, eval_config)
    summary = result.to_dict()
    atomic_write_json(run_dir / "eval" / f"iter_{iteration:06d}.json", {**summary, "protocol": protocol})
    tracker.log_evaluation(iteration, summary, grid_image(*_one_per_prompt(result)))
    scores: dict = {metric.test_key: result.summary[metric.mean] for metric in task.metrics}
    return {**scores, "eval_protocol": protocol}
