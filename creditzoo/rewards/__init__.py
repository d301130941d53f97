"""Rewards: plain callables ``(images [B, 3, H, W] in [0, 1], prompts: list[str]) -> Tensor[B]`` (float32).

``REWARDS`` is the table of contents (name -> ``"package.module:function"``), loaded lazily so that importing
this package imports nothing heavy (no scipy). :func:`get_reward` also accepts any
``"package.module:function"`` path directly.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from creditzoo.tasks import load_object

RewardFn = Callable[[torch.Tensor, list[str]], torch.Tensor]
"""``(images [B, 3, H, W] in [0, 1], prompts) -> float32 [B]``."""

REWARDS: dict[str, str] = {
    "geneval": "creditzoo.rewards.geneval:partial_reward",
    "geneval_dense": "creditzoo.rewards.geneval:dense_reward",
    "geneval_strict": "creditzoo.rewards.geneval:strict_reward",
}


def get_reward(name: str) -> RewardFn:
    """Look up a reward by registry name or ``"package.module:function"`` path.

    Raises:
        ValueError: for an unknown name (listing the registered ones) or a path that does not resolve to a
            callable.
    """
    if name in REWARDS:
        path = REWARDS[name]
    elif ":" in name:
        path = name
    else:
        raise ValueError(
            f"unknown reward {name!r}; valid rewards: {', '.join(sorted(REWARDS))} "
            "(or a 'package.module:function' path)"
        )
    reward = load_object(path)
    if not callable(reward):
        raise ValueError(f"{path} is not callable")
    return reward  # type: ignore[return-value]
