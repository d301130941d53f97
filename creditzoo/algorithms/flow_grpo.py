"""Flow-GRPO's credit assignment: the terminal reward broadcast to every trained step.

Liu et al. 2025, "Flow-GRPO: Training Flow Matching Models via Online RL" (arXiv 2505.05470): every
denoising step of a trajectory is credited with the trajectory's final reward R_K; advantages are normalised
per group at each step (docs/math.md sections 3 and 4).
"""

from __future__ import annotations

from creditzoo.algorithms._group import check_std_options, make_credit, require_shape
from creditzoo.algorithms.spec import AlgorithmSpec
from creditzoo.rollout import Credit, Rollout


def flow_grpo(rollout: Rollout, *, std_mode: str = "group", eps: float = 1e-4) -> Credit:
    """Terminal-reward broadcast: step_rewards[:, k] = R_K for every k.

    Args:
        rollout: B trajectories with K trained steps; only ``final_rewards`` [B] is used.
        std_mode: advantage normalisation ("group", "global", "none").
        eps: added to the std.

    Returns:
        :class:`Credit` with step_rewards [B, K], no turning points, advantages [B, K].
    """
    check_std_options(std_mode, eps)
    require_shape(rollout, "flow_grpo", FLOW_GRPO.shape)
    step_rewards = rollout.final_rewards.unsqueeze(1).expand(-1, rollout.num_steps).clone()  # [B, K]
    return make_credit(rollout, step_rewards, std_mode=std_mode, eps=eps)


FLOW_GRPO = AlgorithmSpec(
    fn=flow_grpo,
    shape="chain",
    needs_completions=False,
    paper="arXiv 2505.05470",
    cost="0",
    description="Flow-GRPO: terminal reward R_K broadcast to every step",
)
