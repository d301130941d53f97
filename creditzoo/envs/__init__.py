"""Denoising environments: one per task, registered with gymnasium (``creditzoo/GenEval-v0``).

Every task with a ``gym_id`` is registered (:func:`register_envs`, run on import); :func:`make_env` builds the
environment of a task with its default model and reward, or with a model you pass (e.g. one carrying a LoRA
adapter); :func:`env_ids` lists them.
"""

from __future__ import annotations

import functools

import gymnasium

from creditzoo.envs.completion import COMPLETION_FORMS, CompletionMode, parse_completion_mode
from creditzoo.envs.denoising import DenoisingConfig, DenoisingEnv
from creditzoo.models.base import FlowModel


def env_ids() -> dict[str, str]:
    """Task name -> gymnasium id, for every task that registers an environment (derived from ``TASKS``)."""
    from creditzoo.tasks import TASKS, get_task

    return {name: get_task(name).gym_id for name in TASKS if get_task(name).gym_id}


def make_env(
    name: str,
    *,
    num_envs: int,
    config: DenoisingConfig | None = None,
    model: FlowModel | None = None,
    reward: object | None = None,
) -> DenoisingEnv:
    """Build the denoising environment of task ``name``; ``gymnasium.make_vec(task.gym_id)`` calls this.

    Args:
        name: a key of ``creditzoo.tasks.TASKS`` (e.g. "geneval").
        num_envs: B, trajectories per episode.
        config: grid, guidance, window, completion mode (defaults: :class:`DenoisingConfig`).
        model: the policy; default: the task's shipped model.
        reward: a reward callable (or a noisy wrapper); default: the task's default reward, the one training
            uses too.

    Raises:
        ValueError: unknown name, listing the valid ones.
    """
    from creditzoo.tasks import get_task, load_object

    task = get_task(name)
    if model is None:
        model = load_object(task.load_model)()  # type: ignore[operator]
    if reward is None:
        reward = task.reward()
    return DenoisingEnv(model, reward, num_envs=num_envs, config=config or DenoisingConfig())


def register_envs() -> None:
    """Register every task's environment with gymnasium under its ``gym_id`` (idempotent)."""
    from creditzoo.tasks import TASKS, get_task

    for name in TASKS:
        gym_id = get_task(name).gym_id
        if gym_id and gym_id not in gymnasium.registry:
            gymnasium.register(id=gym_id, vector_entry_point=functools.partial(make_env, name))


register_envs()

__all__ = [
    "COMPLETION_FORMS",
    "CompletionMode",
    "DenoisingConfig",
    "DenoisingEnv",
    "env_ids",
    "make_env",
    "parse_completion_mode",
    "register_envs",
]
