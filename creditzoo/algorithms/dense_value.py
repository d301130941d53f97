"""DenseGRPO's dense reward baseline: each step is credited with the reward of the state it leads to.

Deng et al. 2026, "DenseGRPO" (arXiv 2601.20218): the value of the state after step k, estimated by completing
it with the ODE and scoring the image (R_{k+1}), is the step reward; advantages are the section-4 ones
(docs/math.md section 9.2). DenseGRPO's main method, the increment d_k normalised per group and step, is
:mod:`creditzoo.algorithms.incremental`.
"""

from __future__ import annotations

from creditzoo.algorithms._group import check_std_options, make_credit, require_completions
from creditzoo.algorithms.spec import AlgorithmSpec
from creditzoo.rollout import Credit, Rollout


def dense_value(rollout: Rollout, *, std_mode: str = "group", eps: float = 1e-4) -> Credit:
    """Dense value rewards: step_rewards[:, k] = R_{k+1}.

    Args:
        rollout: a chain rollout with ``completion_rewards`` [B, K+1].
        std_mode: advantage normalisation ("group", "global", "none").
        eps: added to the std.

    Returns:
        :class:`Credit` with step_rewards [B, K], no turning points, advantages [B, K].
    """
    check_std_options(std_mode, eps)
    rewards = require_completions(rollout, "dense_value")  # [B, K+1]
    step_rewards = rewards[:, 1:].clone()  # [B, K]
    return make_credit(rollout, step_rewards, std_mode=std_mode, eps=eps)


DENSE_VALUE = AlgorithmSpec(
    fn=dense_value,
    shape="chain",
    needs_completions=True,
    paper="arXiv 2601.20218",
    cost="ode: K(T-w) - K(K-1)/2 extra calls, K reward calls (T(T+1)/2-1 at w=0, K=T-1)",
    description="DenseGRPO's dense reward baseline: R_{k+1} as the step reward",
)
