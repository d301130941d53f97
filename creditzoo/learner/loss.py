"""The GRPO loss as pure functions (docs/math.md section 5).

Per trained step k, with ratio = exp(logp_theta - logp_old):
L_k = mean_b max(-A * ratio, -A * clip(ratio, 1 - eps, 1 + eps)) + beta * KL_k, and
KL_k = mean over elements of (mean_theta - mean_ref)^2 / (2 std^2) (Flow-GRPO, Liu et al. 2025, arXiv 2505.05470).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from creditzoo.sampling.sde import SdeStep


@dataclass(frozen=True)
class PolicyLoss:
    """Clipped-surrogate terms for one trained step of a minibatch.

    Attributes:
        loss: scalar policy loss.
        ratio: [B] probability ratios.
        clip_fraction: scalar, share of samples whose ratio fell outside the clip range.
    """

    loss: torch.Tensor
    ratio: torch.Tensor
    clip_fraction: torch.Tensor


def clipped_surrogate(
    log_prob: torch.Tensor,
    old_log_prob: torch.Tensor,
    advantages: torch.Tensor,
    *,
    clip_range: float,
    weights: torch.Tensor | None = None,
    batch_size: int | None = None,
) -> PolicyLoss:
    """PPO's clipped surrogate, averaged over the batch, optionally weighted per sample.

    The loss is mean_b(weights[b] * surrogate[b]); with ``batch_size`` the sum is divided by ``batch_size``
    instead of B (the rows given are the trained subset of a minibatch of that size; the others add 0).
    With ``weights=None`` (or all ones) and no ``batch_size`` it is exactly the unweighted mean.

    Args:
        log_prob: [B] log-probabilities under the current policy (with gradient).
        old_log_prob: [B] log-probabilities recorded while sampling.
        advantages: [B] (already clipped).
        clip_range: eps of clip(ratio, 1 - eps, 1 + eps).
        weights: [B] per-sample loss weights, or None for ones.
        batch_size: the minibatch size the sum is averaged over (default B).

    Returns:
        :class:`PolicyLoss`.
    """
    ratio = torch.exp(log_prob - old_log_prob)  # [B]
    unclipped = -advantages * ratio
    clipped = -advantages * torch.clamp(ratio, 1.0 - clip_range, 1.0 + clip_range)
    surrogate = torch.maximum(unclipped, clipped)  # [B]
    if weights is not None:
        surrogate = weights.to(surrogate.dtype) * surrogate
    loss = surrogate.mean() if batch_size is None else surrogate.sum() / batch_size
    clip_fraction = ((ratio - 1.0).abs() > clip_range).float().mean()
    return PolicyLoss(loss=loss, ratio=ratio.detach(), clip_fraction=clip_fraction.detach())


def gaussian_mean_kl(mean: torch.Tensor, ref_mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """KL between two Gaussians with equal std, averaged over elements and the batch.

    Args:
        mean: [B, ...] policy mean (with gradient).
        ref_mean: [B, ...] reference mean.
        std: broadcastable to ``mean``, > 0.

    Returns:
        Scalar mean of (mean - ref_mean)^2 / (2 std^2).
    """
    return ((mean - ref_mean) ** 2 / (2 * std**2)).mean()


@dataclass(frozen=True)
class StepLoss:
    """The loss of one window step of a minibatch, on the rows one process evaluated.

    Attributes:
        loss: scalar with gradient, ``surrogate.loss + beta * kl`` (the surrogate alone without a reference).
        kl: scalar, the KL term before ``beta`` (scaled to this process's share of the minibatch), or None.
        surrogate: the clipped-surrogate terms (:func:`clipped_surrogate`).
    """

    loss: torch.Tensor
    kl: torch.Tensor | None
    surrogate: PolicyLoss


def step_loss(
    step: SdeStep,
    old_log_prob: torch.Tensor,
    advantages: torch.Tensor,
    *,
    clip_range: float,
    minibatch_size: int,
    weights: torch.Tensor | None = None,
    reference: SdeStep | None = None,
    beta: float = 0.0,
) -> StepLoss:
    """L_k of one window step k on m rows of a minibatch of M rows (docs/math.md section 5).

    L_k = sum_b(weights[b] * surrogate[b]) / M + beta * KL_k, with KL_k = :func:`gaussian_mean_kl` of the policy's
    and the reference's step means, times m / M: each process evaluates its m rows and divides by the minibatch's
    M, so the terms of all processes add up to the minibatch's loss.

    Args:
        step: the policy's step on the m rows (``log_prob`` [m] with gradient, ``mean`` [m, ...], ``std``).
        old_log_prob: [m] log-probabilities recorded while sampling.
        advantages: [m] (already clipped).
        clip_range: eps of the ratio clip.
        minibatch_size: M, the minibatch's rows over every process.
        weights: [m] loss weights (credit weights times step weights), or None for ones.
        reference: the reference model's step on the same rows (adapter disabled), or None: no KL term.
        beta: the KL weight (used only with a ``reference``).

    Returns:
        :class:`StepLoss`.
    """
    surrogate = clipped_surrogate(
        step.log_prob, old_log_prob, advantages, clip_range=clip_range, weights=weights, batch_size=minibatch_size
    )
    if reference is None:
        return StepLoss(loss=surrogate.loss, kl=None, surrogate=surrogate)
    kl = gaussian_mean_kl(step.mean, reference.mean, step.std) * (step.log_prob.shape[0] / minibatch_size)
    return StepLoss(loss=surrogate.loss + beta * kl, kl=kl, surrogate=surrogate)
