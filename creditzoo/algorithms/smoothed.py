"""Smoothed increments: a Rauch-Tung-Striebel smoother denoises the completion rewards, then a clean scheme runs.

creditzoo's own scheme (docs/math.md section 10.4). Along a trajectory the clean completion rewards are modelled as a
random walk, R_{k+1} = R_k + w_k with w_k ~ N(0, q_k) and a flat prior on R_0, observed with independent noise of
SD sigma (``noise_sd``). The Kalman filter runs forward over k = 0 .. K and the Rauch-Tung-Striebel smoother back,
giving the posterior means of R_0 .. R_K given every observed reward of the trajectory (Rauch, Tung and Striebel
1965, "Maximum likelihood estimates of linear dynamic systems", AIAA Journal 3(8)). The same means solve
(I + sigma^2 D^T diag(1/q) D) R_hat = R, D the [K, K+1] difference matrix; the tests check one against the other.

q_k, the variance of a clean increment at step k, is ``process_var`` when given, else estimated from the batch by
moments: an observed increment has E[d_k^2] = q_k + 2 sigma^2 under the model, so
q_k = max(0, mean over the batch of d_k^2 - 2 sigma^2). ``incremental_rts`` is ``incremental`` and
``tp_grpo_strict_rts`` is ``tp_grpo_strict`` on the smoothed rewards; at sigma = 0 the smoother returns the rewards
unchanged, and both are their clean schemes bit for bit.
"""

from __future__ import annotations

import functools
import math

import torch

from creditzoo.algorithms._group import check_noise_sd, check_std_options, require_completions
from creditzoo.algorithms.incremental import incremental
from creditzoo.algorithms.spec import AlgorithmSpec
from creditzoo.algorithms.tp_grpo import TP_GRPO_COST, check_tp_options, tp_grpo
from creditzoo.rollout import Credit, Rollout


def increment_variance(rewards: torch.Tensor, noise_sd: float) -> torch.Tensor:
    """q_k = max(0, mean_b d_bk^2 - 2 sigma^2): the clean increments' variance per step, float64 [K].

    Args:
        rewards: float [B, K+1] observed completion rewards.
        noise_sd: sigma of each reward's noise.
    """
    d = rewards.double()[:, 1:] - rewards.double()[:, :-1]  # [B, K]
    return ((d * d).mean(0) - 2 * noise_sd**2).clamp_min(0.0)


def smooth_completion_rewards(rewards: torch.Tensor, noise_sd: float, process_var: float | None = None) -> torch.Tensor:
    """The RTS smoother's posterior means of the clean completion rewards, [B, K+1] like ``rewards``.

    Args:
        rewards: float [B, K+1] observed completion rewards R_0 .. R_K.
        noise_sd: sigma >= 0 of each reward's noise; 0 returns ``rewards`` itself.
        process_var: q >= 0, the variance of a clean increment at every step; None estimates q_k per step
            (:func:`increment_variance`).

    Returns:
        float [B, K+1], same dtype (computed in float64).
    """
    if noise_sd == 0:
        return rewards
    observed = rewards.double()  # [B, K+1]
    steps = observed.shape[1] - 1
    if process_var is None:
        q = increment_variance(rewards, noise_sd)  # [K]
    else:
        q = torch.full((steps,), float(process_var), dtype=torch.float64)
    q = q.to(observed.device)
    noise = noise_sd**2
    means, variances = [observed[:, 0]], [torch.tensor(noise, dtype=torch.float64, device=observed.device)]
    for k in range(1, steps + 1):  # Kalman filter; the gains are the same for every row
        predicted = variances[-1] + q[k - 1]
        gain = predicted / (predicted + noise)
        means.append(means[-1] + gain * (observed[:, k] - means[-1]))  # [B]
        variances.append((1 - gain) * predicted)
    smoothed = [means[-1]]
    for k in range(steps - 1, -1, -1):  # Rauch-Tung-Striebel, backwards
        back = variances[k] / (variances[k] + q[k])
        smoothed.append(means[k] + back * (smoothed[-1] - means[k]))
    return torch.stack(smoothed[::-1], dim=1).to(rewards.dtype)  # [B, K+1]


def _check_process_var(process_var: float | None) -> None:
    if process_var is None:
        return
    valid = isinstance(process_var, (int, float)) and not isinstance(process_var, bool)
    if not (valid and math.isfinite(process_var) and process_var >= 0):
        raise ValueError(
            f"process_var must be None (estimated from the batch) or a finite number >= 0, got {process_var!r}"
        )


def _smoothed(rollout: Rollout, name: str, noise_sd: float, process_var: float | None) -> Rollout:
    check_noise_sd(noise_sd)
    _check_process_var(process_var)
    rewards = require_completions(rollout, name)  # [B, K+1]
    smoothed = smooth_completion_rewards(rewards, noise_sd, process_var)
    return Rollout(group_ids=rollout.group_ids, completion_rewards=smoothed)


def incremental_rts(
    rollout: Rollout,
    *,
    noise_sd: float = 0.0,
    process_var: float | None = None,
    std_mode: str = "group",
    eps: float = 1e-4,
) -> Credit:
    """``incremental`` on RTS-smoothed completion rewards: step_rewards[:, k] = R_hat_{k+1} - R_hat_k.

    Args:
        rollout: needs ``completion_rewards`` [B, K+1].
        noise_sd: sigma, the SD of the noise on each completion reward the rollout holds (with N reward repeats,
            the per-call SD / sqrt(N)); the learner fills it from ``--reward-noise-sd``. 0: ``incremental``.
        process_var: q, a clean increment's variance; None: estimated per step from the batch.
        std_mode: advantage normalisation ("group", "global", "none").
        eps: added to the std.

    Returns:
        :class:`Credit` with step_rewards [B, K], no turning points, advantages [B, K].
    """
    check_std_options(std_mode, eps)
    return incremental(_smoothed(rollout, "incremental_rts", noise_sd, process_var), std_mode=std_mode, eps=eps)


def tp_grpo_rts(
    rollout: Rollout,
    *,
    noise_sd: float = 0.0,
    process_var: float | None = None,
    strict: bool = False,
    initial_step: bool = True,
    balance: bool = True,
    balance_key: str = "r_agg",
    std_mode: str = "group",
    eps: float = 1e-4,
) -> Credit:
    """TP-GRPO on RTS-smoothed completion rewards; registered with ``strict=True`` as ``tp_grpo_strict_rts``.

    Args:
        rollout: needs ``completion_rewards`` [B, K+1].
        noise_sd: sigma, the SD of the noise on each completion reward the rollout holds (with N reward repeats,
            the per-call SD / sqrt(N)); the learner fills it from ``--reward-noise-sd``. 0: ``tp_grpo``.
        process_var: q, a clean increment's variance; None: estimated per step from the batch.
        strict: consistency constraint (Definition 5.1).
        initial_step: initial-step extension (Remark 4.2).
        balance: balance positive and negative turning points over the batch.
        balance_key: "r_agg" (per step) or "trajectory" (R_K - R_0).
        std_mode: advantage normalisation ("group", "global", "none").
        eps: added to the std.

    Returns:
        :class:`Credit` with step_rewards [B, K], turning_points [B, K], advantages [B, K].
    """
    check_std_options(std_mode, eps)
    check_tp_options(strict=strict, initial_step=initial_step, balance=balance, balance_key=balance_key)
    smoothed = _smoothed(rollout, "tp_grpo_rts", noise_sd, process_var)
    options = {"balance": balance, "balance_key": balance_key, "std_mode": std_mode, "eps": eps}
    return tp_grpo(smoothed, strict=strict, initial_step=initial_step, **options)


INCREMENTAL_RTS = AlgorithmSpec(
    fn=incremental_rts,
    shape="chain",
    needs_completions=True,
    paper="creditzoo (this work)",
    cost=TP_GRPO_COST,
    description="incremental on RTS-smoothed completion rewards (random-walk prior, noise_sd)",
)
TP_GRPO_STRICT_RTS = AlgorithmSpec(
    fn=functools.partial(tp_grpo_rts, strict=True),
    shape="chain",
    needs_completions=True,
    paper="creditzoo (this work)",
    cost=TP_GRPO_COST,
    description="tp_grpo_strict on RTS-smoothed completion rewards (random-walk prior, noise_sd)",
)
