"""What credit-assignment algorithms see of a rollout, and what they return.

A batch holds B trajectories in groups that share a prompt (``group_ids``). Each trajectory has K trained
(SDE-window) steps and, for algorithms that need them, K + 1 completion rewards R_0 .. R_K
(ALGORITHMS.md section 2): R_k is the reward of the image obtained by completing state z_k with the ODE,
and R_K is the trajectory's own final reward.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


def _check(name: str, value: torch.Tensor, shape: tuple[int, ...], *, floating: bool) -> None:
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
    if tuple(value.shape) != shape:
        raise ValueError(f"{name} must have shape {list(shape)}, got {list(value.shape)}")
    if floating:
        if not value.is_floating_point():
            raise TypeError(f"{name} must be a floating-point tensor, got {value.dtype}")
        if not bool(torch.isfinite(value).all()):
            raise ValueError(f"{name} contains NaN or infinite values")


@dataclass(frozen=True)
class Rollout:
    """Rewards and group structure of B trajectories with K trained steps.

    Build with keywords: ``Rollout(group_ids=..., completion_rewards=...)`` or
    ``Rollout(group_ids=..., final_rewards=..., num_steps=K)``.

    Attributes:
        group_ids: int64 [B]; trajectories with equal ids share a prompt (labels are arbitrary).
        completion_rewards: float [B, K + 1] (R_0 .. R_K) or None when only final rewards were computed.
        final_rewards: float [B]; defaults to ``completion_rewards[:, -1]``.
        num_steps: K; inferred from ``completion_rewards`` when given.
    """

    group_ids: torch.Tensor
    completion_rewards: torch.Tensor | None = None
    final_rewards: torch.Tensor | None = None
    num_steps: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.group_ids, torch.Tensor):
            raise TypeError(f"group_ids must be a torch.Tensor, got {type(self.group_ids).__name__}")
        if self.group_ids.ndim != 1 or self.group_ids.dtype != torch.int64:
            raise ValueError(
                f"group_ids must be int64 of shape [B], got {self.group_ids.dtype} {list(self.group_ids.shape)}"
            )
        batch = self.group_ids.shape[0]
        if batch == 0:
            raise ValueError("a rollout needs at least one trajectory (group_ids is empty)")
        if self.completion_rewards is None and self.final_rewards is None:
            raise ValueError("give completion_rewards [B, K+1], or final_rewards [B] with num_steps=K")
        if self.completion_rewards is not None:
            rewards = self.completion_rewards
            if not isinstance(rewards, torch.Tensor) or rewards.ndim != 2 or rewards.shape[1] < 2:
                shape = list(rewards.shape) if isinstance(rewards, torch.Tensor) else type(rewards).__name__
                raise ValueError(f"completion_rewards must have shape [B={batch}, K+1] with K >= 1, got {shape}")
            steps = rewards.shape[1] - 1
            if self.num_steps is not None and self.num_steps != steps:
                raise ValueError(f"num_steps={self.num_steps} but completion_rewards has K+1={steps + 1} columns")
            _check("completion_rewards", rewards, (batch, steps + 1), floating=True)
            object.__setattr__(self, "num_steps", steps)
            if self.final_rewards is None:
                object.__setattr__(self, "final_rewards", rewards[:, -1])
        elif self.num_steps is None or int(self.num_steps) < 1:
            raise ValueError(f"with final_rewards only, num_steps=K >= 1 is required, got {self.num_steps!r}")
        _check("final_rewards", self.final_rewards, (batch,), floating=True)

    @property
    def batch_size(self) -> int:
        """B, the number of trajectories."""
        return self.group_ids.shape[0]

    @property
    def has_completions(self) -> bool:
        """Whether completion rewards R_0 .. R_K are present."""
        return self.completion_rewards is not None


@dataclass(frozen=True)
class Credit:
    """An algorithm's output for a rollout with B trajectories and K trained steps.

    Attributes:
        step_rewards: float [B, K], the reward each step is credited with.
        turning_points: bool [B, K], steps credited with their aggregated long-term reward (TP-GRPO);
            all False for algorithms without turning points.
        advantages: float [B, K], group-normalised step rewards (ALGORITHMS.md section 4), before clipping.
    """

    step_rewards: torch.Tensor
    turning_points: torch.Tensor
    advantages: torch.Tensor

    def __post_init__(self) -> None:
        shape = tuple(self.step_rewards.shape)
        if len(shape) != 2:
            raise ValueError(f"step_rewards must have shape [B, K], got {list(shape)}")
        if self.turning_points.dtype != torch.bool:
            raise TypeError(f"turning_points must be bool, got {self.turning_points.dtype}")
        for name in ("turning_points", "advantages"):
            value = getattr(self, name)
            if tuple(value.shape) != shape:
                raise ValueError(f"{name} must have shape {list(shape)} like step_rewards, got {list(value.shape)}")
