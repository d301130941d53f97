"""Rewards: plain callables ``(images [B, 3, H, W] in [0, 1], prompts: list[str]) -> Tensor[B]`` (float32).

Each task names its rewards (:attr:`creditzoo.tasks.Task.rewards`, looked up with
:meth:`creditzoo.tasks.Task.reward`); :mod:`creditzoo.rewards.noise` wraps any of them in a noise model.
Importing this package imports nothing heavy (no scipy).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

RewardFn = Callable[[torch.Tensor, list[str]], torch.Tensor]
"""``(images [B, 3, H, W] in [0, 1], prompts) -> float32 [B]``."""

__all__ = ["RewardFn"]
