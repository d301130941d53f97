"""Text-to-image tasks: prompt sets, a train/test split, a scorer and the model that goes with them.

``TASKS`` is the table of contents; each entry is loaded lazily (``"package.module:attribute"``) so that
listing tasks imports nothing heavy.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

TASKS: dict[str, str] = {
    "geneval": "creditzoo.tasks.geneval:TASK",
}


@dataclass(frozen=True)
class Task:
    """Everything an environment, learner or evaluation needs to know about one task.

    Attributes:
        name: registry name, e.g. "geneval".
        description: one line for ``creditzoo envs``.
        train_prompts: returns the prompts RL training draws from (fixed, deterministic).
        test_prompts: returns the held-out evaluation prompts (never used in pretraining or training).
        category: maps a prompt to its category name (for per-category evaluation).
        score: ``(images [B, 3, H, W] in [0, 1], prompts) -> dict[str, Tensor[B]]`` with at least the keys
            "strict_accuracy" and "partial_score"; used by evaluation.
        rewards: reward name -> ``"package.module:attribute"`` of a reward callable
            ``(images, prompts) -> Tensor[B]``; the first entry is the default training reward.
        default_model: the model spec (see :func:`creditzoo.models.load_model`) trained when the configuration
            names none, e.g. "toy".
        train_defaults: TrainConfig fields this task's model needs other than the library defaults (which
            follow Flow-GRPO / TP-GRPO at SD3.5 scale); ``creditzoo train --env NAME`` applies them under the
            config file and the command line.
    """

    name: str
    description: str
    train_prompts: Callable[[], list[str]]
    test_prompts: Callable[[], list[str]]
    category: Callable[[str], str]
    score: Callable[[torch.Tensor, list[str]], dict[str, torch.Tensor]]
    rewards: dict[str, str] = field(default_factory=dict)
    default_model: str = "toy"
    train_defaults: dict[str, object] = field(default_factory=dict)

    @property
    def default_reward(self) -> str:
        """Name of the default training reward (the first in ``rewards``)."""
        return next(iter(self.rewards))


def load_object(path: str) -> object:
    """Import ``"package.module:attribute"`` and return the attribute."""
    module_name, sep, attribute = path.partition(":")
    if not sep or not module_name or not attribute:
        raise ValueError(f"expected 'package.module:attribute', got {path!r}")
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise ValueError(f"cannot import module {module_name!r} from {path!r}: {error}") from error
    if not hasattr(module, attribute):
        raise ValueError(f"module {module_name!r} has no attribute {attribute!r}")
    return getattr(module, attribute)


def get_task(name: str) -> Task:
    """Look up a task by registry name.

    Raises:
        ValueError: for an unknown name, listing the valid ones.
    """
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; valid tasks: {', '.join(sorted(TASKS))}")
    task = load_object(TASKS[name])
    assert isinstance(task, Task), f"{TASKS[name]} is not a Task"
    return task
