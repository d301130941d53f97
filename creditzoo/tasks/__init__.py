"""Text-to-image tasks: prompt sets, a train/test split, a scorer and the model that goes with them.

``TASKS`` is the table of contents, and a new task is one entry in it: its :class:`Task` names everything else
(its gymnasium id, its rewards, its evaluation metrics, its default model, what pretraining renders). Entries are
loaded lazily (``"package.module:attribute"``) so that listing tasks imports nothing heavy.
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


UNIT = (0.0, 1.0)
"""The range of a share, an accuracy, a rate or a partial score: :attr:`Metric.bounds` of most metrics."""


@dataclass(frozen=True)
class Metric:
    """One evaluation metric of a task: a per-image score and its category-balanced mean.

    Attributes:
        name: the key :attr:`Task.score` returns the per-image score [B] under, and its key in the image records
            of an evaluation file (``eval/final.json``).
        meaning: what it measures, in one line.
        mean: the name of its category-balanced mean (the mean over categories of the per-category mean) in
            evaluation summaries and metrics lines (``test_MEAN``, ``final_test_MEAN``); default ``name``.
            GenEval's per-image ``extra_objects`` has the mean ``extra_object_rate``.
        label: its name in reports, tables and figures; default ``mean`` with spaces.
        higher_is_better: False for a rate to keep low: reports show it beside a verdict, never as its subject.
        correctness: a 0/1 score, 1 where the image is correct; evaluation grids frame each image green or red by
            the first such metric of the task.
        bounds: (low, high), the range every per-image score lies in, and so every mean of them (:data:`UNIT` for
            accuracies, rates and partial scores); reports clip intervals of the metric's means to it. None:
            unbounded or unknown (nothing is clipped).
    """

    name: str
    meaning: str
    mean: str = ""
    label: str = ""
    higher_is_better: bool = True
    correctness: bool = False
    bounds: tuple[float, float] | None = None

    def __post_init__(self) -> None:
        if self.bounds is not None and not self.bounds[0] < self.bounds[1]:
            raise ValueError(f"metric {self.name!r} needs bounds (low, high) with low < high, got {self.bounds}")
        if not self.mean:
            object.__setattr__(self, "mean", self.name)
        if not self.label:
            object.__setattr__(self, "label", self.mean.replace("_", " "))

    @property
    def test_key(self) -> str:
        """Its key in the metrics lines of ``metrics.jsonl``: ``test_MEAN`` (``final_test_MEAN`` at the end)."""
        return f"test_{self.mean}"


@dataclass(frozen=True)
class Task:
    """Everything an environment, learner or evaluation needs to know about one task.

    Attributes:
        name: registry name, e.g. "geneval".
        description: one line for ``creditzoo envs``.
        train_prompts: returns the prompts RL training draws from (fixed, deterministic).
        test_prompts: returns the held-out evaluation prompts (never used in pretraining or training).
        category: maps a prompt to its category name (for per-category evaluation).
        score: ``(images [B, 3, H, W] in [0, 1], prompts) -> dict[str, Tensor[B]]`` with a key per metric (more
            are allowed); used by evaluation.
        metrics: what evaluation reports, in order (:class:`Metric`: per-image score, mean, meaning).
        primary_metric: the name of the metric a run is judged by: the progress line, ``analyze compare``'s
            default ``--metric``; one of ``metrics``, higher is better.
        rewards: reward name -> ``"package.module:attribute"`` of a reward callable
            ``(images, prompts) -> Tensor[B]``; the first entry is the default reward, the same for
            ``gymnasium.make_vec`` and for training.
        default_model: the model spec (see :func:`creditzoo.models.load_model`) trained when the configuration
            names none, e.g. "toy"; None for tasks whose model must be given (``--model sd3:PATH``).
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
    metrics: tuple[Metric, ...]
    primary_metric: str
    rewards: dict[str, str] = field(default_factory=dict)
    default_model: str | None = None
    train_defaults: dict[str, object] = field(default_factory=dict)
    gym_id: str = ""
    render_scenes: str = ""
    vocabulary: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "metrics", tuple(self.metrics))
        names = [metric.name for metric in self.metrics]
        means = [metric.mean for metric in self.metrics]
        if not names or len(set(names)) != len(names) or len(set(means)) != len(means):
            raise ValueError(f"task {self.name!r} needs one or more metrics with distinct names, got {names}")
        if self.metric(self.primary_metric).higher_is_better is False:
            raise ValueError(f"task {self.name!r}: the primary metric {self.primary_metric!r} must be higher-is-better")

    def metric(self, name: str) -> Metric:
        """The metric called ``name``.

        Raises:
            ValueError: no such metric, listing this task's.
        """
        for metric in self.metrics:
            if metric.name == name:
                return metric
        raise ValueError(
            f"unknown metric {name!r} of task {self.name!r}; valid: {', '.join(m.name for m in self.metrics)}"
        )

    @property
    def primary(self) -> Metric:
        """The :class:`Metric` named by ``primary_metric``."""
        return self.metric(self.primary_metric)

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


__all__ = ["TASKS", "Metric", "Task", "get_task", "load_object"]
