"""Incremental step reward: each step is credited with the reward change it causes.

The step-wise incremental reward d_k = R_{k+1} - R_k of TP-GRPO (Tong et al. 2026, "Alleviating Sparse
Rewards by Modeling Step-Wise and Long-Term Sampling Effects in Flow-Based GRPO", arXiv 2602.06422,
section 4.1), used alone, without turning points (docs/math.md section 3).
"""

from __future__ import annotations

from creditzoo.algorithms._group import check_std_options, make_credit, require_completions
from creditzoo.algorithms.spec import AlgorithmSpec
from creditzoo.rollout import Credit, Rollout


def incremental(rollout: Rollout, *, std_mode: str = "group", eps: float = 1e-4) -> Credit:
    """Incremental rewards: step_rewards[:, k] = R_{k+1} - R_k.

    Args:
        rollout: needs ``completion_rewards`` [B, K+1].
        std_mode: advantage normalisation ("group", "global", "none").
        eps: added to the std.

    Returns:
        :class:`Credit` with step_rewards [B, K], no turning points, advantages [B, K].
    """
    check_std_options(std_mode, eps)
    rewards = require_completions(rollout, "incremental")  # [B, K+1]
    step_rewards = rewards[:, 1:] - rewards[:, :-1]  # [B, K]
    return make_credit(rollout, step_rewards, std_mode=std_mode, eps=eps)


INCREMENTAL = AlgorithmSpec(
    fn=incremental,
    shape="chain",
    needs_completions=True,
    paper="arXiv 2602.06422",
    cost="ode: K(T-w) - K(K-1)/2 extra calls, K reward calls (T(T+1)/2-1 at w=0, K=T-1)",
    description="incremental step reward d_k = R_{k+1} - R_k",
)
