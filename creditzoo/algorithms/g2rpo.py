"""G2RPO: anchor-branch children completed at several granularities, advantages summed over them.

Zhou et al. 2025, "G2RPO: Granular GRPO for Precise Reward in Flow Models" (arXiv 2510.01982). Each child
c_{k,i} of the anchor (docs/math.md section 9.3) is completed once per granularity g, by Euler steps over every
g-th point of the grid from index j + 1, always ending at sigma = 0, and scored: R^g_{k,i}. The advantage is
the sum over g of the section-4 advantages of R^g (clipped afterwards by the learner, as every advantage).
"""

from __future__ import annotations

from creditzoo.algorithms._group import check_std_options, group_advantages, no_turning_points, require_shape
from creditzoo.algorithms.spec import AlgorithmSpec
from creditzoo.rollout import Credit, Rollout
from creditzoo.shapes.anchor import check_granularities

DEFAULT_GRANULARITIES = (1, 2)


def g2rpo(
    rollout: Rollout,
    *,
    granularities: tuple[int, ...] = DEFAULT_GRANULARITIES,
    std_mode: str = "group",
    eps: float = 1e-4,
) -> Credit:
    """Multi-granularity credit: A = sum over g of group_advantages(R^g).

    Args:
        rollout: an anchor rollout with ``branch_rewards`` [B, K, L], L = len(granularities), column l holding
            the rewards of completions at ``granularities[l]``.
        granularities: grid strides of the completions (default (1, 2)); the environment completes with them.
        std_mode: advantage normalisation ("group", "global", "none").
        eps: added to the std.

    Returns:
        :class:`Credit` with step_rewards [B, K] (the mean of R^g over granularities, for the records), no
        turning points, advantages [B, K] (the sum over granularities, unclipped).
    """
    check_std_options(std_mode, eps)
    values = check_granularities(granularities)
    require_shape(rollout, "g2rpo", G2RPO.shape)
    rewards = rollout.branch_rewards  # [B, K, L]
    if rewards.shape[2] != len(values):
        raise ValueError(
            f"g2rpo with granularities {values} needs branch_rewards [B, K, {len(values)}], got L={rewards.shape[2]}"
        )
    advantages = sum(
        group_advantages(rewards[:, :, level], rollout.group_ids, std_mode=std_mode, eps=eps)
        for level in range(len(values))
    )  # [B, K]
    step_rewards = rewards.mean(dim=2)  # [B, K]
    return Credit(step_rewards=step_rewards, turning_points=no_turning_points(step_rewards), advantages=advantages)


G2RPO = AlgorithmSpec(
    fn=g2rpo,
    shape="anchor",
    needs_completions=True,
    paper="arXiv 2510.01982",
    cost="ode: sum over g, k of 1 + ceil((T-w-k-2)/g) calls (0 at w+k+1 = T), K|G| reward calls per row; "
    "T anchor calls per prompt",
    description="G2RPO: anchor children completed at several granularities, advantages summed",
)
