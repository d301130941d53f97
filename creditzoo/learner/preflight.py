"""Checks that run before a command writes anything: the paths it will write, prompts, memory.

A command that fails after it has written something leaves a half-made run directory behind (and a rerun
then finds it "already exists"); one that fails after an hour of evaluation has wasted the hour. So what can
be known before the work starts is checked first, in one line each:

- :func:`check_writable`: a directory the command will write to (a run directory, ``--out``, a sweep
  directory) can be written, found by writing a probe file, which is the only test that also holds for root
  (root ignores permission bits; a read-only mount or a path under a regular file stops root too).
- :func:`check_prompts`: every train and test prompt is one the model can read (the toy model's word-level
  tokenizer refuses unknown words and prompts longer than its ``max_tokens``).
- :func:`check_memory`: the rollout's latents and one update minibatch fit in the memory available
  (:func:`estimate_memory`, a lower bound: what cannot fit even so is refused, anything else is tried).

:func:`check_run_dir` (before the model loads) and :func:`check_before_start` (once it has) run them for a
training run; ``creditzoo train --overwrite`` removes an old run only after both have passed.
"""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from creditzoo.messages import shown

if TYPE_CHECKING:
    import torch

    from creditzoo.learner.config import TrainConfig
    from creditzoo.models.base import FlowModel
    from creditzoo.tasks import Task

LATENT_BYTES = 4
"""Bytes per latent element: the environment keeps latents in float32 whatever the model's dtype."""
PROMPT_CHUNK = 256
"""Prompts tokenized at once by :func:`check_prompts`."""


class UnwritablePathError(ValueError):
    """A directory a command would write to cannot be written (read-only, under a file, no permission)."""


class PromptError(ValueError):
    """A prompt the model cannot read (a word outside its vocabulary, more tokens than it takes)."""


class InsufficientMemoryError(ValueError):
    """A configuration whose rollout cannot fit in the memory available."""


# ------------------------------------------------------------------------------------------------------ paths


def probe_write(directory: Path) -> None:
    """Create and remove a temporary file in ``directory``; raise the OSError the system gives if it cannot.

    Tests replace this function to stand for a read-only directory (as root, permission bits do not bind).
    """
    handle, name = tempfile.mkstemp(prefix=".creditzoo-write-test-", dir=directory)
    os.close(handle)
    os.unlink(name)


def check_writable(path: str | Path, what: str = "directory") -> None:
    """Raise unless directory ``path`` (existing, or to be created with its parents) can be written.

    Nothing is created: the nearest existing ancestor of a missing ``path`` is probed instead.

    Args:
        path: the directory the command will write to.
        what: how the message names it ("run directory", "--out", ...).

    Raises:
        UnwritablePathError: one line, e.g. ``run directory '/data/run' is not writable: Read-only file system``.
    """
    path = Path(path)
    try:
        existing = path
        while not existing.exists() and existing != existing.parent:
            existing = existing.parent
        if not existing.is_dir():
            reason = "it is not a directory" if existing == path else f"{shown(str(existing))} is not a directory"
            raise UnwritablePathError(f"{what} {shown(str(path))} is not writable: {reason}")
        probe_write(existing)
    except UnwritablePathError:
        raise
    except OSError as error:
        reason = error.strerror or type(error).__name__
        raise UnwritablePathError(f"{what} {shown(str(path))} is not writable: {reason}") from error


def check_output_file(path: str | Path, what: str = "output file") -> None:
    """Raise unless file ``path`` can be written: not a directory, its folder writable (or creatable).

    Raises:
        UnwritablePathError: one line naming the path and the reason.
    """
    path = Path(path)
    if path.is_dir():
        raise UnwritablePathError(f"{what} {shown(str(path))} is a directory; give a file name, e.g. grid.png")
    check_writable(path.parent, what=f"the folder of {what} {shown(str(path))}:")


# ---------------------------------------------------------------------------------------------------- prompts


def check_prompts(model: FlowModel, prompts: Sequence[str], source: str) -> None:
    """Raise unless the model takes every prompt (its :meth:`~creditzoo.models.base.FlowModel.check_prompts`).

    Args:
        model: a FlowModel; the toy model refuses unknown words and over-long prompts, the diffusers backends
            truncate and so accept everything.
        prompts: the prompts a run will encode (train and test).
        source: where they come from, for the message ("the train prompts of geneval", a file name).

    Raises:
        PromptError: one line naming the source, the problem and the prompt (cut when long).
    """
    unique = list(dict.fromkeys(prompts))
    for start in range(0, len(unique), PROMPT_CHUNK):
        try:
            model.check_prompts(unique[start : start + PROMPT_CHUNK])
        except ValueError as error:
            raise PromptError(f"{source}: {error}") from error


# ----------------------------------------------------------------------------------------------------- memory


@dataclass(frozen=True)
class MemoryEstimate:
    """A lower bound on the memory one training iteration allocates beyond the loaded model.

    Attributes:
        batch: B, trajectories (leaves for a tree) this process samples per iteration.
        latent_elements: elements of one latent (the product of the model's ``sample_shape``).
        rollout_latents: latents the rollout keeps per trajectory until the update: K + 1 window states of a
            chain (twice that with completions: the completed latents of every state), 2K for anchor and tree
            rows (an input and an output per step).
        minibatch: trajectories of one update minibatch (ceil(B / updates_per_iteration)).
        rollout_bytes: B x rollout_latents x latent_elements x 4 bytes.
        update_bytes: the minibatch's input and output latents of one step, float32: a floor under the update's
            activations, which the model multiplies by its depth.
    """

    batch: int
    latent_elements: int
    rollout_latents: int
    minibatch: int
    rollout_bytes: int
    update_bytes: int

    @property
    def total_bytes(self) -> int:
        """rollout_bytes + update_bytes."""
        return self.rollout_bytes + self.update_bytes


def estimate_memory(config: TrainConfig, model: object, world_size: int = 1) -> MemoryEstimate:
    """What a configuration needs at least, from the model's ``sample_shape`` and the batch shape.

    Args:
        config: the run's configuration.
        model: the loaded FlowModel (its ``sample_shape`` gives the latent size).
        world_size: training processes; each samples B / world_size trajectories.

    Returns:
        The :class:`MemoryEstimate` of one process.
    """
    from creditzoo.shapes import get_shape

    algorithm = config.algorithm
    shape = get_shape(algorithm.rollout_shape)
    latents = shape.latents_per_row(config.resolved_window_size, completions=algorithm.needs_completions)
    elements = math.prod(int(size) for size in model.sample_shape)  # type: ignore[attr-defined]
    batch = max(1, config.batch_size // world_size)
    minibatch = math.ceil(batch / config.updates_per_iteration)
    return MemoryEstimate(
        batch=batch,
        latent_elements=elements,
        rollout_latents=latents,
        minibatch=minibatch,
        rollout_bytes=batch * latents * elements * LATENT_BYTES,
        update_bytes=minibatch * 2 * elements * LATENT_BYTES,
    )


def available_memory(device: torch.device) -> int | None:
    """Bytes free on ``device``: the GPU's free memory, else the system's MemAvailable (None if unknown)."""
    if device.type == "cuda":
        import torch

        return int(torch.cuda.mem_get_info(device)[0])
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except ImportError:
        pass
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def check_memory(
    config: TrainConfig,
    model: object,
    device: torch.device,
    *,
    world_size: int = 1,
    available: int | None = None,
) -> MemoryEstimate:
    """Raise when the :func:`estimate_memory` lower bound exceeds the memory available on ``device``.

    Args:
        config: the run's configuration.
        model: the loaded FlowModel.
        device: where the rollout's latents live.
        world_size: training processes.
        available: bytes available (None: :func:`available_memory`; unknown: no check).

    Returns:
        The estimate.

    Raises:
        InsufficientMemoryError: one line with the estimate, what is available and what to lower.
    """
    estimate = estimate_memory(config, model, world_size)
    free = available_memory(device) if available is None else available
    if free is not None and estimate.total_bytes > free:
        shape = "x".join(str(size) for size in model.sample_shape)  # type: ignore[attr-defined]
        raise InsufficientMemoryError(
            f"this configuration needs at least {_size(estimate.total_bytes)} of memory (batch {estimate.batch} = "
            f"{config.prompts_per_iteration} prompts x group {config.group_size}, {estimate.rollout_latents} "
            f"latents of {shape} float32 each: {_size(estimate.rollout_bytes)}; update minibatch of "
            f"{estimate.minibatch}: {_size(estimate.update_bytes)}) but {_size(free)} is available on "
            f"{device.type}; lower --group-size or --prompts-per-iteration"
        )
    return estimate


def _size(count: int) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if count >= scale:
            return f"{count / scale:.1f} {unit}"
    return f"{count} bytes"


# ------------------------------------------------------------------------------------------------ a training run


def check_run_dir(run_dir: Path, *, resume: bool) -> None:
    """The run directory can take the run: writable, and (a new run over an old one) its folder too.

    Args:
        run_dir: the run directory (existing when resuming or overwriting).
        resume: whether the run continues in ``run_dir`` or starts there (``--overwrite`` removes an old one,
            which its folder must allow).

    Raises:
        UnwritablePathError: one line naming the directory and the reason.
    """
    check_writable(run_dir, "run directory")
    if not resume and run_dir.exists():
        check_writable(run_dir.resolve().parent, f"the folder of run directory {shown(str(run_dir))}:")


def check_before_start(
    config: TrainConfig, task: Task, model: object, device: torch.device, *, world_size: int = 1
) -> None:
    """What a training run needs of its loaded model: every prompt readable, the rollout within memory.

    Args:
        config: the run's configuration.
        task: its task (with the prompt files of ``config.prompts`` applied).
        model: the loaded base model.
        device: where the model runs.
        world_size: training processes.

    Raises:
        ValueError: one line (:class:`PromptError`, :class:`InsufficientMemoryError`).
    """
    source = f"prompt files {shown(config.prompts)}" if config.prompts else f"the prompts of task {config.env!r}"
    check_prompts(model, [*task.train_prompts(), *task.test_prompts()], source)
    check_memory(config, model, device, world_size=world_size)
