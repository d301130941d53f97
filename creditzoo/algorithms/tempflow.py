"""TempFlow-GRPO: every window step is its own group of children branched from one ODE anchor.

He et al. 2025, "TempFlow-GRPO: When Timing Matters for GRPO in Flow Models" (arXiv 2508.04324). Per prompt,
one ODE anchor o_0 .. o_T; at window step k the anchor spawns C SDE children c_{k,i}, each completed and
scored, R_{k,i}. The step reward of row (prompt, i) at step k is R_{k,i}, normalised over the C children of
(prompt, k) (docs/math.md sections 9.3 and 4). Its default step weighting is the noise-aware one
(``step_weight="noise"``, section 7.1), applied by the learner.
"""

from __future__ import annotations

from creditzoo.algorithms._group import check_std_options, make_credit, require_shape
from creditzoo.algorithms.spec import AlgorithmSpec
from creditzoo.rollout import Credit, Rollout


def tempflow(rollout: Rollout, *, std_mode: str = "group", eps: float = 1e-4) -> Credit:
    """Per-step child rewards: step_rewards[b, k] = R_{k,i} for row b = (prompt, i).

    Args:
        rollout: an anchor rollout with ``branch_rewards`` [B, K, 1].
        std_mode: advantage normalisation ("group", "global", "none").
        eps: added to the std.

    Returns:
        :class:`Credit` with step_rewards [B, K], no turning points, advantages [B, K].
    """
    check_std_options(std_mode, eps)
    require_shape(rollout, "tempflow", TEMPFLOW.shape)
    width = rollout.branch_rewards.shape[2]
    if width != 1:
        raise ValueError(f"tempflow needs one completion per child (branch_rewards [B, K, 1]), got L={width}")
    step_rewards = rollout.branch_rewards[:, :, 0].clone()  # [B, K]
    return make_credit(rollout, step_rewards, std_mode=std_mode, eps=eps)


TEMPFLOW = AlgorithmSpec(
    fn=tempflow,
    shape="anchor",
    needs_completions=True,
    paper="arXiv 2508.04324",
    cost="ode: K(T-w-1) - K(K-1)/2 calls, K reward calls per row (T(T-1)/2 at w=0, K=T-1); T anchor calls per prompt",
    description="TempFlow-GRPO: C SDE children of an ODE anchor per step, noise-aware step weights",
    default_step_weight="noise",
)
