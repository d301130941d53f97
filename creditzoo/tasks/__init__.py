"""Text-to-image tasks: prompt sets, a train/test split, a scorer and the model that goes with them.

``TASKS`` is the table of contents, and a new task is one entry in it: its :class:`Task` names everything else
(its gymnasium id, its rewards, its default model, what pretraining renders). Entries are loaded lazily
(``"package.module:attribute"``) so that listing tasks imports nothing heavy.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from creditzoo.registry import load_object, lookup

TASKS: dict[str, str] = {
    "geneval": "creditzoo.tasks.geneval:TASK",
    "ocr": "creditzoo.tasks.ocr:TASK",
    "pickscore": "creditzoo.tasks.pickscore:TASK",
    "geneval_server": "creditzoo.tasks.geneval_server:TASK",
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
            ``(images, prompts) -> Tensor[B]``; the first entry is the default reward, the same for
            ``gymnasium.make_vec`` and for training.
        load_model: ``"package.module:function"`` returning the task's default :class:`FlowModel`.
        gym_id: the gymnasium id its environment is registered under (e.g. "creditzoo/GenEval-v0").
        render_scenes: ``"package.module:function"`` rendering ``(prompts, rng) -> images`` for pretraining the
            toy model on this task ("" if it cannot be pretrained); ``vocabulary`` names its word list.
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
    load_model: str = ""
    train_defaults: dict[str, object] = field(default_factory=dict)
    gym_id: str = ""
    render_scenes: str = ""
    vocabulary: str = ""

    @property
    def default_reward(self) -> str:
        """Name of the default training reward (the first in ``rewards``)."""
        return next(iter(self.rewards))

    def reward(self, name: str | None = None) -> Callable[[torch.Tensor, list[str]], torch.Tensor]:
        """The reward callable ``name`` (a key of ``rewards`` or a ``"package.module:function"`` path).

        Raises:
            ValueError: an unknown name, listing this task's rewards.
        """
        reward = lookup(name or self.default_reward, self.rewards, f"reward for {self.name}")
        if not callable(reward):
            raise ValueError(f"reward {name!r} of {self.name} is not callable")
        return reward  # type: ignore[return-value]


def get_task(name: str) -> Task:
    """Look up a task by registry name.

    Raises:
        ValueError: for an unknown name, listing the valid ones.
    """
    task = lookup(name, TASKS, "environment", paths=False)
    if not isinstance(task, Task):
        raise ValueError(f"{TASKS[name]} is not a Task")
    return task


__all__ = ["TASKS", "Task", "get_task", "load_object"]
