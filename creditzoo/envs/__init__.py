"""Denoising environments: one per task, registered with gymnasium (``creditzoo/GenEval-v0``).

``ENVS`` maps the short names the CLI takes to gymnasium ids; :func:`make_env` builds an environment for a
task with its default model and reward, or with a model you pass (e.g. one carrying a LoRA adapter).
"""

from __future__ import annotations

import gymnasium
import torch

from creditzoo.envs.completion import COMPLETION_FORMS, CompletionMode, parse_completion_mode
from creditzoo.envs.denoising import DenoisingConfig, DenoisingEnv
from creditzoo.models.base import FlowModel

ENVS: dict[str, str] = {
    "geneval": "creditzoo/GenEval-v0",
}


def make_env(
    name: str,
    *,
    num_envs: int,
    config: DenoisingConfig | None = None,
    model: FlowModel | None = None,
    reward: object | None = None,
) -> DenoisingEnv:
    """Build the denoising environment of task ``name``.

    Args:
        name: a key of ``ENVS`` (e.g. "geneval").
        num_envs: B, trajectories per episode.
        config: grid, guidance, window, completion mode (defaults: :class:`DenoisingConfig`).
        model: the policy; default: the task's shipped model.
        reward: a reward callable (or a noisy wrapper); default: the task's default training reward.

    Raises:
        ValueError: unknown name, listing the valid ones.
    """
    from creditzoo.models import load_model
    from creditzoo.rewards import get_reward
    from creditzoo.tasks import get_task

    if name not in ENVS:
        raise ValueError(f"unknown environment {name!r}; valid: {', '.join(ENVS)}")
    task = get_task(name)
    if model is None:
        model = load_model(task.default_model, device=torch.device("cpu"))
    if reward is None:
        reward = get_reward(task.default_reward)
    return DenoisingEnv(model, reward, num_envs=num_envs, config=config or DenoisingConfig())


def _vector_entry_point(num_envs: int = 1, **kwargs: object) -> DenoisingEnv:
    return make_env("geneval", num_envs=num_envs, **kwargs)  # type: ignore[arg-type]


for _name, _id in ENVS.items():
    if _id not in gymnasium.registry:
        gymnasium.register(id=_id, vector_entry_point=f"{__name__}:_vector_entry_point")

__all__ = [
    "COMPLETION_FORMS",
    "ENVS",
    "CompletionMode",
    "DenoisingConfig",
    "DenoisingEnv",
    "make_env",
    "parse_completion_mode",
]
