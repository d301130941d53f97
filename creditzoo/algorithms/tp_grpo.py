"""TP-GRPO: incremental step rewards, with turning points credited by their aggregated long-term reward.

Tong et al. 2026, "Alleviating Sparse Rewards by Modeling Step-Wise and Long-Term Sampling Effects in
Flow-Based GRPO" (arXiv 2602.06422). Implements docs/math.md section 3:

- Definition 4.1 (``strict=False``, "w/o constraint"): with d_k = R_{k+1} - R_k, g = sign(R_K - R_0) and
  s_k = sign(d_k) * g, step k >= 1 is a turning point iff s_{k-1} < 0 and s_k > 0.
- Remark 4.2 (``initial_step=True``): step 0 is a turning point iff s_0 > 0.
- Definition 5.1 (``strict=True``, "w/ consistency constraint"): additionally
  sign(d_k) * sign(R_K - R_{k+1}) > 0; for step 0 this condition alone decides.
- A turning point whose aggregated reward r_agg_k = R_K - R_k is 0 is not a turning point.
- Balancing (``balance=True``): over the whole batch, if there are P > 0 turning points with positive key and
  N > 0 with negative key, keep the min(P, N) largest |key| of each sign. The key is r_agg
  (``balance_key="r_agg"``) or, as in the released code, the trajectory's R_K - R_0
  (``balance_key="trajectory"``). Equal |key| are ranked by position in the flattened [B, K] batch.
- Turning points are credited with r_agg_k, every other step with d_k.

The rule of the released configurations (``tp_grpo_release``, ``tp_grpo_strict_release``; docs/math.md
section 3, "The released rule"): every step is credited with the trajectory's R_K - R_0, and a turning point
(of ``tp_grpo``, or of ``tp_grpo_strict``) adds its own d_k; no balancing, no r_agg.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch

from creditzoo.algorithms._group import check_std_options, make_credit, require_completions
from creditzoo.algorithms.spec import AlgorithmSpec
from creditzoo.rollout import Credit, Rollout

BALANCE_KEYS = ("r_agg", "trajectory")


def dead_zone_sign(values: torch.Tensor, margin: float = 0.0) -> torch.Tensor:
    """sign(x) where |x| > margin, else 0 (docs/math.md section 10.2); margin 0 gives sign(x) exactly.

    Args:
        values: float [...] score differences.
        margin: the half-width of the dead zone, >= 0, on the scale of ``values``.

    Returns:
        float [...] in {-1, 0, +1}, same shape and dtype.
    """
    return torch.where(values.abs() > margin, torch.sign(values), torch.zeros_like(values))


def turning_points(
    rewards: torch.Tensor, *, strict: bool = False, initial_step: bool = True, margin: float = 0.0
) -> torch.Tensor:
    """Mark turning points of trajectories from their completion rewards (before balancing).

    Args:
        rewards: float [B, K+1] completion rewards R_0 .. R_K.
        strict: apply the consistency constraint (Definition 5.1).
        initial_step: allow step 0 to be a turning point (Remark 4.2).
        margin: a score difference (d_k, the trend R_K - R_0, the consistency term R_K - R_{k+1}) has a sign
            only where its magnitude exceeds ``margin``; 0 (TP-GRPO) counts every non-zero difference
            (``tp_margin`` passes c * sqrt(2) * sigma, docs/math.md section 10.2).

    Returns:
        bool [B, K].
    """
    increments = rewards[:, 1:] - rewards[:, :-1]  # [B, K] d_k
    final = rewards[:, -1:]  # [B, 1] R_K
    step_sign = dead_zone_sign(increments, margin)  # [B, K] sign(d_k)
    trend = dead_zone_sign(final - rewards[:, :1], margin)  # [B, 1] g
    local = step_sign * trend  # [B, K] s_k
    flips = torch.zeros_like(local, dtype=torch.bool)  # [B, K]
    flips[:, 1:] = (local[:, :-1] < 0) & (local[:, 1:] > 0)
    if initial_step:
        flips[:, 0] = local[:, 0] > 0
    if strict:
        # sign(d_k) * sign(R_K - R_{k+1}) > 0; at step 0 it implies s_0 > 0, so it decides alone there.
        flips &= step_sign * dead_zone_sign(final - rewards[:, 1:], margin) > 0
    return flips & (final - rewards[:, :-1] != 0)


def _top_by_magnitude(mask: torch.Tensor, magnitude: torch.Tensor, count: torch.Tensor) -> torch.Tensor:
    """Keep the ``count`` entries of ``mask`` with the largest ``magnitude`` (ties: flattened position)."""
    flat = torch.where(mask, magnitude, torch.full_like(magnitude, -1.0)).flatten()  # members are > 0
    order = torch.sort(flat, descending=True, stable=True).indices
    rank = torch.empty_like(order)
    rank[order] = torch.arange(order.numel(), device=order.device)
    return (rank < count).view_as(mask) & mask


def balance_turning_points(marked: torch.Tensor, key: torch.Tensor) -> torch.Tensor:
    """Keep equally many positive- and negative-key turning points across the batch.

    Args:
        marked: bool [B, K] turning points.
        key: float [B, K] balancing key (non-zero where marked).

    Returns:
        bool [B, K]: if both signs occur, the min(P, N) largest |key| of each sign; otherwise ``marked``.
    """
    positive, negative = marked & (key > 0), marked & (key < 0)  # [B, K]
    num_pos, num_neg = positive.sum(), negative.sum()
    keep = torch.minimum(num_pos, num_neg)
    magnitude = key.abs()
    balanced = _top_by_magnitude(positive, magnitude, keep) | _top_by_magnitude(negative, magnitude, keep)
    return torch.where((num_pos > 0) & (num_neg > 0), balanced, marked)


def tp_grpo(
    rollout: Rollout,
    *,
    strict: bool = False,
    initial_step: bool = True,
    balance: bool = True,
    balance_key: str = "r_agg",
    std_mode: str = "group",
    eps: float = 1e-4,
) -> Credit:
    """TP-GRPO credit: d_k everywhere, r_agg_k = R_K - R_k at turning points.

    Args:
        rollout: needs ``completion_rewards`` [B, K+1].
        strict: consistency constraint (Definition 5.1); registered as ``tp_grpo_strict``.
        initial_step: initial-step extension (Remark 4.2); off in the ``*_noinit`` entries.
        balance: balance positive and negative turning points over the batch.
        balance_key: "r_agg" (per step) or "trajectory" (R_K - R_0, as the released code).
        std_mode: advantage normalisation ("group", "global", "none").
        eps: added to the std.

    Returns:
        :class:`Credit` with step_rewards [B, K], turning_points [B, K], advantages [B, K].
    """
    check_std_options(std_mode, eps)
    check_tp_options(strict=strict, initial_step=initial_step, balance=balance, balance_key=balance_key)
    rewards = require_completions(rollout, "tp_grpo")  # [B, K+1]
    marked = turning_points(rewards, strict=strict, initial_step=initial_step)  # [B, K]
    return turning_point_credit(
        rollout, rewards, marked, balance=balance, balance_key=balance_key, std_mode=std_mode, eps=eps
    )


def turning_point_credit(
    rollout: Rollout,
    rewards: torch.Tensor,
    marked: torch.Tensor,
    *,
    balance: bool,
    balance_key: str,
    std_mode: str,
    eps: float,
) -> Credit:
    """Balance the marks, then credit r_agg_k at turning points and d_k elsewhere (docs/math.md section 3).

    Args:
        rollout: the rollout (its group ids normalise the advantages).
        rewards: float [B, K+1] the completion rewards the marks were found on.
        marked: bool [B, K] turning points before balancing.
        balance: balance positive and negative turning points over the batch.
        balance_key: "r_agg" or "trajectory".
        std_mode: advantage normalisation ("group", "global", "none").
        eps: added to the std.
    """
    if balance:
        marked = balance_turning_points(marked, balance_keys(rewards, balance_key))
    increments = rewards[:, 1:] - rewards[:, :-1]  # [B, K]
    aggregated = rewards[:, -1:] - rewards[:, :-1]  # [B, K] r_agg
    step_rewards = torch.where(marked, aggregated, increments)  # [B, K]
    return make_credit(rollout, step_rewards, marked, std_mode=std_mode, eps=eps)


def check_tp_options(*, strict: bool, initial_step: bool, balance: bool, balance_key: str) -> None:
    """Validate the turning-point options shared by TP-GRPO and its noise-aware relatives (one line each)."""
    if balance_key not in BALANCE_KEYS:
        raise ValueError(f"unknown balance_key {balance_key!r}; valid: {', '.join(BALANCE_KEYS)}")
    for name, value in (("strict", strict), ("initial_step", initial_step), ("balance", balance)):
        if not isinstance(value, bool):
            raise TypeError(f"{name} must be True or False, got {value!r}")


def balance_keys(rewards: torch.Tensor, balance_key: str) -> torch.Tensor:
    """The balancing key of every step, float [B, K]: r_agg_k = R_K - R_k, or the trajectory's R_K - R_0.

    Args:
        rewards: float [B, K+1] completion rewards R_0 .. R_K.
        balance_key: "r_agg" or "trajectory".
    """
    aggregated = rewards[:, -1:] - rewards[:, :-1]  # [B, K]
    if balance_key == "r_agg":
        return aggregated
    return (rewards[:, -1:] - rewards[:, :1]).expand_as(aggregated)


def tp_grpo_release(rollout: Rollout, *, strict: bool = False, std_mode: str = "group", eps: float = 1e-4) -> Credit:
    """The rule TP-GRPO's released ``*_op3()`` configurations train: (R_K - R_0) + [turning point at k] * d_k.

    The turning points are :func:`turning_points` with the initial-step extension (released
    ``apply_first_step_bonus=True``), with the consistency test when ``strict`` (released
    ``select_*_only_from_consistent_trajectory``); nothing is balanced (``use_balanced_bonus=False``).

    Args:
        rollout: needs ``completion_rewards`` [B, K+1].
        strict: the consistency test of Definition 5.1 on the marks; registered as ``tp_grpo_strict_release``.
        std_mode: advantage normalisation ("group", "global", "none").
        eps: added to the std.

    Returns:
        :class:`Credit` with step_rewards [B, K], turning_points [B, K], advantages [B, K].
    """
    check_std_options(std_mode, eps)
    if not isinstance(strict, bool):
        raise TypeError(f"strict must be True or False, got {strict!r}")
    rewards = require_completions(rollout, "tp_grpo_release")  # [B, K+1]
    increments = rewards[:, 1:] - rewards[:, :-1]  # [B, K] d_k
    trajectory = rewards[:, -1:] - rewards[:, :1]  # [B, 1] R_K - R_0
    marked = turning_points(rewards, strict=strict, initial_step=True)  # [B, K]
    step_rewards = trajectory + torch.where(marked, increments, torch.zeros_like(increments))  # [B, K]
    return make_credit(rollout, step_rewards, marked, std_mode=std_mode, eps=eps)


TP_GRPO_COST = "ode: K(T-w) - K(K-1)/2 extra calls, K reward calls (T(T+1)/2-1 at w=0, K=T-1)"
"""Extra model calls of ``ode`` completions and reward calls, shared by the six variants."""


def _tp_record(fn: Callable[..., Credit], description: str) -> AlgorithmSpec:
    """The record of a TP-GRPO variant: every one reads chains with completions and costs the same."""
    return AlgorithmSpec(
        fn=fn,
        shape="chain",
        needs_completions=True,
        paper="arXiv 2602.06422",
        cost=TP_GRPO_COST,
        description=description,
    )


TP_GRPO = _tp_record(tp_grpo, "TP-GRPO w/o constraint (Def. 4.1) + initial step (Rem. 4.2)")
TP_GRPO_STRICT = _tp_record(
    functools.partial(tp_grpo, strict=True), "TP-GRPO w/ consistency constraint (Def. 5.1) + initial step"
)
TP_GRPO_NOINIT = _tp_record(
    functools.partial(tp_grpo, initial_step=False), "TP-GRPO w/o constraint, no initial-step extension"
)
TP_GRPO_STRICT_NOINIT = _tp_record(
    functools.partial(tp_grpo, strict=True, initial_step=False),
    "TP-GRPO w/ consistency constraint, no initial-step extension",
)
TP_GRPO_RELEASE = _tp_record(
    tp_grpo_release,
    "TP-GRPO as released (*_op3 configs): R_K - R_0 at every step, + d_k at turning points; no balancing",
)
TP_GRPO_STRICT_RELEASE = _tp_record(
    functools.partial(tp_grpo_release, strict=True),
    "TP-GRPO as released (*_op3 configs), with the consistency test on the turning points",
)
