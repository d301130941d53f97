"""Denoising environments: one per task, registered with gymnasium (``creditzoo/GenEval-v0``).

Every task with a ``gym_id`` is registered (:func:`register_envs`, run by ``import creditzoo``) with two entry
points: ``gymnasium.make_vec(id, num_envs=B)`` builds B lockstep trajectories (:func:`make_vector_env`; numpy-facing
by default, ``arrays="torch"`` for the torch-native :class:`DenoisingEnv`), and ``gymnasium.make(id)`` builds one
trajectory as a plain ``gymnasium.Env`` (:func:`make_episode_env`). :func:`make_env` builds the torch-native
environment of a task with its default model and reward, or with a model you pass (e.g. one carrying a LoRA
adapter); :func:`env_ids` lists the ids.
"""

from __future__ import annotations

import gymnasium
import torch

from creditzoo.envs.completion import COMPLETION_FORMS, CompletionMode, parse_completion_mode
from creditzoo.envs.denoising import DenoisingConfig, DenoisingEnv
from creditzoo.envs.interop import DenoisingEpisodeEnv, NumpyDenoisingEnv
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
    """Build the torch-native denoising environment of task ``name`` (what the learner drives).

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
    from creditzoo.models import load_model
    from creditzoo.tasks import get_task

    task = get_task(name)
    if model is None:
        if task.default_model is None:
            raise ValueError(f"task {name!r} has no default model; pass model=... (e.g. load_model('sd3:PATH'))")
        model = load_model(task.default_model, device=torch.device("cpu"))
    if reward is None:
        reward = task.reward()
    return DenoisingEnv(model, reward, num_envs=num_envs, config=config or DenoisingConfig())


ARRAY_KINDS = ("numpy", "torch")


def make_vector_env(
    task: str,
    num_envs: int,
    *,
    arrays: str = "numpy",
    config: DenoisingConfig | None = None,
    model: FlowModel | None = None,
    reward: object | None = None,
) -> NumpyDenoisingEnv | DenoisingEnv:
    """``gymnasium.make_vec(task.gym_id, num_envs=B, ...)``: B lockstep trajectories of task ``task``.

    Numpy by default, because that is what gymnasium's own vector wrappers and checkers take; the torch-native
    environment the learner drives is one keyword away (``arrays="torch"``) and is the one to use on a GPU.

    Args:
        task: a key of ``creditzoo.tasks.TASKS`` (the registration passes it).
        num_envs: B, trajectories per episode.
        arrays: "numpy" (a :class:`NumpyDenoisingEnv`: numpy in and out, autoreset, resets without options draw
            the task's train prompts) or "torch" (the bare :class:`DenoisingEnv`).
        config: grid, guidance, window, completion mode (e.g. ``DenoisingConfig(num_steps=4)``).
        model: the policy; default: the task's shipped model.
        reward: a reward callable; default: the task's default reward, the one training uses too.

    Raises:
        ValueError: an unknown ``arrays`` or task, listing the valid ones.
    """
    if arrays not in ARRAY_KINDS:
        raise ValueError(f"unknown arrays {arrays!r}; valid: {', '.join(ARRAY_KINDS)}")
    env = make_env(task, num_envs=num_envs, config=config, model=model, reward=reward)
    if arrays == "torch":
        return env
    from creditzoo.tasks import get_task

    return NumpyDenoisingEnv(env, get_task(task).train_prompts())


def make_episode_env(
    task: str,
    *,
    config: DenoisingConfig | None = None,
    model: FlowModel | None = None,
    reward: object | None = None,
) -> DenoisingEpisodeEnv:
    """``gymnasium.make(task.gym_id, ...)``: one trajectory of task ``task`` as a numpy ``gymnasium.Env``.

    Args are those of :func:`make_vector_env`; resets without a prompt draw one of the task's train prompts.
    """
    from creditzoo.tasks import get_task

    env = make_env(task, num_envs=1, config=config, model=model, reward=reward)
    return DenoisingEpisodeEnv(env, get_task(task).train_prompts())


def register_envs() -> None:
    """Register every task's environment with gymnasium under its ``gym_id`` (idempotent).

    String entry points: registering loads neither a model nor a reward.
    """
    from creditzoo.tasks import TASKS, get_task

    for name in TASKS:
        gym_id = get_task(name).gym_id
        if gym_id and gym_id not in gymnasium.registry:
            gymnasium.register(
                id=gym_id,
                entry_point="creditzoo.envs:make_episode_env",
                vector_entry_point="creditzoo.envs:make_vector_env",
                kwargs={"task": name},
            )


register_envs()

__all__ = [
    "ARRAY_KINDS",
    "COMPLETION_FORMS",
    "CompletionMode",
    "DenoisingConfig",
    "DenoisingEnv",
    "DenoisingEpisodeEnv",
    "NumpyDenoisingEnv",
    "env_ids",
    "make_env",
    "make_episode_env",
    "make_vector_env",
    "parse_completion_mode",
    "register_envs",
]
