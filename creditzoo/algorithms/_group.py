"""Kernels shared by the algorithms: group-relative advantages (docs/math.md section 4) and option checks.

Everything is vectorised over the batch: groups are found with ``torch.unique`` and reduced with
``index_add_`` / ``scatter_reduce_``, never with a Python loop over samples or groups.
"""

from __future__ import annotations

import math

import torch

from creditzoo.rollout import Credit, Rollout, shape_mismatch
from creditzoo.shapes import shape_with_field

STD_MODES = ("group", "global", "none")


def check_std_options(std_mode: str, eps: float) -> None:
    """Validate the advantage options every algorithm takes."""
    if std_mode not in STD_MODES:
        raise ValueError(f"unknown std_mode {std_mode!r}; valid: {', '.join(STD_MODES)}")
    if not (isinstance(eps, (int, float)) and eps >= 0):
        raise ValueError(f"eps must be a number >= 0, got {eps!r}")


def check_noise_sd(noise_sd: float) -> None:
    """Validate the noise SD a noise-aware scheme is given (docs/math.md section 10.1): a finite number >= 0."""
    if isinstance(noise_sd, bool) or not isinstance(noise_sd, (int, float)):
        raise TypeError(f"noise_sd must be a number >= 0, got {noise_sd!r}")
    if not (math.isfinite(noise_sd) and noise_sd >= 0):
        raise ValueError(f"noise_sd must be a finite number >= 0, got {noise_sd!r}")


def group_advantages(
    values: torch.Tensor, group_ids: torch.Tensor, *, std_mode: str = "group", eps: float = 1e-4
) -> torch.Tensor:
    """Normalise each column of ``values`` within groups: (x - group mean) / (std + eps).

    Args:
        values: float [B, K] step rewards.
        group_ids: int64 [B] group labels.
        std_mode: "group" (population std within the group at that step), "global" (population std over
            the whole batch at that step, Flow-GRPO's default) or "none" (mean-centring only, Dr. GRPO).
        eps: added to the std.

    Returns:
        float [B, K] advantages (unclipped). A group whose values at a step are all equal gets exactly 0.
    """
    check_std_options(std_mode, eps)
    x = values.to(torch.promote_types(values.dtype, torch.float32))  # [B, K]
    _, inverse, counts = torch.unique(group_ids, return_inverse=True, return_counts=True)
    num_groups, width = counts.shape[0], x.shape[1]
    index = inverse.unsqueeze(1).expand_as(x)  # [B, K]
    # Centre on each group's minimum before averaging: all-equal groups then centre to exactly zero.
    low = x.new_full((num_groups, width), float("inf")).scatter_reduce_(0, index, x, reduce="amin")
    shifted = x - low[inverse]  # [B, K]
    n = counts.to(x.dtype).unsqueeze(1)  # [G, 1]
    mean_shifted = x.new_zeros(num_groups, width).index_add_(0, inverse, shifted) / n  # [G, K]
    centred = shifted - mean_shifted[inverse]  # [B, K]
    if std_mode == "none":
        return centred
    if std_mode == "group":
        var = x.new_zeros(num_groups, width).index_add_(0, inverse, centred**2) / n  # [G, K]
        std = var.sqrt()[inverse]  # [B, K]
    else:
        std = x.std(dim=0, correction=0, keepdim=True)  # [1, K]
    # A constant group centres to exactly 0; keep it 0 when eps = 0 too (0 / 0 would be NaN).
    return torch.where(centred == 0, centred, centred / (std + eps))


def make_credit(
    rollout: Rollout,
    step_rewards: torch.Tensor,
    turning_points: torch.Tensor | None = None,
    *,
    std_mode: str = "group",
    eps: float = 1e-4,
) -> Credit:
    """Wrap step rewards [B, K] (and turning points) into a :class:`Credit` with their advantages."""
    advantages = group_advantages(step_rewards, rollout.group_ids, std_mode=std_mode, eps=eps)
    return Credit(
        step_rewards=step_rewards, turning_points=no_turning_points(step_rewards, turning_points), advantages=advantages
    )


def no_turning_points(like: torch.Tensor, turning_points: torch.Tensor | None = None) -> torch.Tensor:
    """``turning_points`` if given, else bool zeros shaped like ``like`` [B, K]."""
    if turning_points is not None:
        return turning_points
    return torch.zeros(like.shape, dtype=torch.bool, device=like.device)


def require_shape(rollout: Rollout, name: str, shape: str) -> None:
    """Fail in one line, naming both shapes, when ``rollout`` is not of the ``shape`` algorithm ``name`` needs."""
    if rollout.shape != shape:
        raise ValueError(shape_mismatch(name, shape, rollout.shape))


def require_completions(rollout: Rollout, name: str) -> torch.Tensor:
    """Return ``rollout.completion_rewards`` [B, K+1], or fail naming the algorithm that needs them."""
    require_shape(rollout, name, shape_with_field("completion_rewards").name)
    if rollout.completion_rewards is None:
        raise ValueError(f"algorithm {name!r} needs completion_rewards [B, K+1]; this rollout has only final rewards")
    return rollout.completion_rewards
