"""Margin turning points: TP-GRPO whose signs count only where a score difference stands clear of the noise.

creditzoo's own scheme (docs/math.md section 10.2), answering the open question of TP-GRPO (Tong et al. 2026,
arXiv 2602.06422) about "alternative turning point criteria beyond sign changes, including magnitude thresholds".
Every completion reward carries noise of SD sigma (``noise_sd``), so every difference of two of them (an increment
d_k, the trend R_K - R_0, the consistency term R_K - R_{k+1}) carries SD sqrt(2) * sigma. Such a difference has a
sign only where its magnitude exceeds c * sqrt(2) * sigma (c = ``margin``); inside the dead zone its sign is 0,
which rules a turning point out exactly as an exact tie does in TP-GRPO. Everything else is TP-GRPO's
(docs/math.md section 3): the marking rule, the r_agg_k = 0 exclusion, balancing and the step rewards. At
sigma = 0 the scheme is ``tp_grpo_strict`` (``strict=False``: ``tp_grpo``), bit for bit.

The default c = 0.39 is the margin at which a turning point decided by its two increments, both standing exactly
at the margin, has posterior probability 1/2 under a flat prior: Phi2(c, c; 1/2) = 1/2. A wrong mark and a missed
one cost the same, |R_K - R_{k+1}| of step reward, so 1/2 is where marking starts to pay (docs/math.md 10.2).
"""

from __future__ import annotations

import math

from creditzoo.algorithms._group import check_noise_sd, check_std_options, require_completions
from creditzoo.algorithms.spec import AlgorithmSpec
from creditzoo.algorithms.tp_grpo import TP_GRPO_COST, check_tp_options, turning_point_credit, turning_points
from creditzoo.rollout import Credit, Rollout

DEFAULT_MARGIN = 0.39
"""c: the root of Phi2(c, c; 1/2) = 1/2 (0.3935), rounded; docs/math.md section 10.2 derives it."""


def tp_margin(
    rollout: Rollout,
    *,
    noise_sd: float = 0.0,
    margin: float = DEFAULT_MARGIN,
    strict: bool = True,
    initial_step: bool = True,
    balance: bool = True,
    balance_key: str = "r_agg",
    std_mode: str = "group",
    eps: float = 1e-4,
) -> Credit:
    """TP-GRPO credit with dead-zone signs: a difference counts only where |difference| > c * sqrt(2) * sigma.

    Args:
        rollout: needs ``completion_rewards`` [B, K+1].
        noise_sd: sigma, the SD of the noise on each completion reward the rollout holds (with N reward repeats,
            the per-call SD / sqrt(N)); the learner fills it from ``--reward-noise-sd``. 0: ``tp_grpo_strict``.
        margin: c >= 0, the dead zone's half-width in units of a difference's noise SD, sqrt(2) * sigma.
        strict: the consistency constraint (Definition 5.1); False gives the margin version of ``tp_grpo``.
        initial_step: initial-step extension (Remark 4.2).
        balance: balance positive and negative turning points over the batch.
        balance_key: "r_agg" (per step) or "trajectory" (R_K - R_0).
        std_mode: advantage normalisation ("group", "global", "none").
        eps: added to the std.

    Returns:
        :class:`Credit` with step_rewards [B, K] (r_agg_k at turning points, d_k elsewhere), turning_points
        [B, K] and advantages [B, K].
    """
    check_std_options(std_mode, eps)
    check_tp_options(strict=strict, initial_step=initial_step, balance=balance, balance_key=balance_key)
    check_noise_sd(noise_sd)
    if isinstance(margin, bool) or not isinstance(margin, (int, float)) or not (math.isfinite(margin) and margin >= 0):
        raise ValueError(f"margin must be a finite number >= 0 (c, in units of sqrt(2) * sigma), got {margin!r}")
    rewards = require_completions(rollout, "tp_margin")  # [B, K+1]
    threshold = margin * math.sqrt(2.0) * noise_sd  # on the score scale
    marked = turning_points(rewards, strict=strict, initial_step=initial_step, margin=threshold)  # [B, K]
    return turning_point_credit(
        rollout, rewards, marked, balance=balance, balance_key=balance_key, std_mode=std_mode, eps=eps
    )


TP_MARGIN = AlgorithmSpec(
    fn=tp_margin,
    shape="chain",
    needs_completions=True,
    paper="creditzoo (this work)",
    cost=TP_GRPO_COST,
    description="tp_grpo_strict whose signs count only where |difference| > c*sqrt(2)*sigma (noise_sd)",
)
