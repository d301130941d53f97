"""One denoising step: Euler ODE, Flow-GRPO's SDE, and coefficient-preserving sampling (CPS).

Formulas: docs/math.md section 1. Flow-GRPO's SDE is from Liu et al. 2025, "Flow-GRPO: Training Flow
Matching Models via Online RL" (arXiv 2505.05470), eq. 9; CPS from Wang and Yu 2025, "Coefficients-Preserving
Sampling for Reinforcement Learning with Flow Matching" (arXiv 2509.05952). Log-probabilities are exact
Gaussian log-densities averaged over the non-batch elements and computed in float32 or wider, except for CPS,
whose default is the quantity Flow-GRPO's and TP-GRPO's released CPS step returns, -mean((x' - mean)^2)
(docs/math.md section 1, "CPS log-probability").
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

SDE_KINDS = ("flow_grpo", "cps")
CPS_LOG_PROBS = ("released", "gaussian")
"""What a CPS step reports as its log-prob: the released code's -mean((x' - mean)^2), or the exact density."""
_LOG_SQRT_2PI = 0.5 * math.log(2.0 * math.pi)


@dataclass(frozen=True)
class SdeStep:
    """Result of one stochastic step.

    Attributes:
        prev_sample: the next latent x' [B, ...] (diffusers' name: the sample one step closer to the image).
        log_prob: float32 [B], log-density of ``prev_sample`` averaged over non-batch elements (for a CPS step with
            ``cps_log_prob="released"``: -mean((x' - mean)^2), the released code's quantity).
        mean: [B, ...] mean of the step's Gaussian.
        std: per-element standard deviation, broadcastable to ``prev_sample`` ([B, 1, ...]).
    """

    prev_sample: torch.Tensor
    log_prob: torch.Tensor
    mean: torch.Tensor
    std: torch.Tensor


def _per_sample(value: float | torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """A float or [B] tensor as float32 [B, 1, ..., 1], broadcastable to ``like``."""
    value = torch.as_tensor(value, dtype=torch.float32, device=like.device)
    if value.ndim == 0:
        value = value.expand(like.shape[0])
    if value.shape != (like.shape[0],):
        raise ValueError(f"sigma must be a float or a tensor of shape [{like.shape[0]}], got {tuple(value.shape)}")
    return value.view(-1, *([1] * (like.ndim - 1)))


def ode_step(
    velocity: torch.Tensor,
    sample: torch.Tensor,
    sigma: float | torch.Tensor,
    sigma_next: float | torch.Tensor,
) -> torch.Tensor:
    """Euler step x' = x + (sigma_next - sigma) * v.

    Args:
        velocity: v [B, ...].
        sample: x [B, ...].
        sigma: float or [B].
        sigma_next: float or [B].

    Returns:
        x' [B, ...] in the dtype of ``sample``.
    """
    dt = _per_sample(sigma_next, sample) - _per_sample(sigma, sample)
    return (sample.float() + dt * velocity.float()).to(sample.dtype)


def x0_prediction(velocity: torch.Tensor, sample: torch.Tensor, sigma: float | torch.Tensor) -> torch.Tensor:
    """Tweedie-style clean-image estimate x0_hat = x - sigma * v, shape [B, ...]."""
    return (sample.float() - _per_sample(sigma, sample) * velocity.float()).to(sample.dtype)


def gaussian_log_prob(value: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """Exact Gaussian log-density, averaged over non-batch elements, in float32 or wider.

    Args:
        value: [B, ...].
        mean: [B, ...].
        std: broadcastable to ``value``, > 0.

    Returns:
        [B] log-density per sample (float32, or float64 for float64 inputs).
    """
    dtype = torch.promote_types(value.dtype, torch.float32)
    value, mean, std = value.to(dtype), mean.to(dtype), std.to(dtype)
    log_density = -((value - mean) ** 2) / (2 * std**2) - torch.log(std) - _LOG_SQRT_2PI
    return log_density.expand_as(value).reshape(value.shape[0], -1).mean(dim=1)


def released_cps_log_prob(value: torch.Tensor, mean: torch.Tensor) -> torch.Tensor:
    """The released CPS "log-prob": -mean((x' - mean)^2) over non-batch elements, no constants, no 1/(2 std^2).

    Flow-GRPO's and TP-GRPO's released CPS step returns this quantity and their clip range 1e-5 is tuned for it
    (docs/math.md section 1). Its difference between two policies is the exact log-ratio times 2 std^2.

    Args:
        value: x' [B, ...].
        mean: [B, ...].

    Returns:
        [B] (float32, or float64 for float64 inputs).
    """
    dtype = torch.promote_types(value.dtype, torch.float32)
    return -((value.to(dtype) - mean.to(dtype)) ** 2).reshape(value.shape[0], -1).mean(dim=1)


def _flow_grpo_moments(
    velocity: torch.Tensor, sample: torch.Tensor, sigma: torch.Tensor, sigma_next: torch.Tensor, a: float
) -> tuple[torch.Tensor, torch.Tensor]:
    dt = sigma_next - sigma
    sigma_hat = torch.where(sigma >= 1.0, sigma_next, sigma)
    s = a * torch.sqrt(sigma / (1.0 - sigma_hat))
    mean = sample * (1 + s**2 * dt / (2 * sigma)) + velocity * (1 + s**2 * (1 - sigma) / (2 * sigma)) * dt
    std = s * torch.sqrt(-dt)
    return mean, std


def _cps_moments(
    velocity: torch.Tensor, sample: torch.Tensor, sigma: torch.Tensor, sigma_next: torch.Tensor, a: float
) -> tuple[torch.Tensor, torch.Tensor]:
    std = sigma_next * math.sin(a * math.pi / 2)
    x0_hat = sample - sigma * velocity
    x1_hat = sample + (1 - sigma) * velocity
    mean = (1 - sigma_next) * x0_hat + torch.sqrt((sigma_next**2 - std**2).clamp_min(0)) * x1_hat
    return mean, std


def sde_step(
    velocity: torch.Tensor,
    sample: torch.Tensor,
    sigma: float | torch.Tensor,
    sigma_next: float | torch.Tensor,
    *,
    noise_level: float,
    kind: str = "flow_grpo",
    generator: torch.Generator | None = None,
    prev_sample: torch.Tensor | None = None,
    noise: torch.Tensor | None = None,
    cps_log_prob: str = "released",
) -> SdeStep:
    """One stochastic step and the log-probability of its result.

    Args:
        velocity: v [B, ...] (after classifier-free guidance, if any).
        sample: x [B, ...] at ``sigma``.
        sigma: float or [B], current noise level (0 < sigma <= 1).
        sigma_next: float or [B], next noise level (< sigma).
        noise_level: a >= 0 (Flow-GRPO default 0.7, CPS default 0.8); 0 gives the ODE step.
        kind: "flow_grpo" or "cps".
        generator: RNG for the noise draw.
        prev_sample: if given, nothing is drawn and ``log_prob`` is this sample's.
        noise: the standard normal draw [B, ...] to use instead of drawing one from ``generator``.
        cps_log_prob: what a CPS step reports as ``log_prob``: "released" (-mean((x' - mean)^2), the papers'
            code) or "gaussian" (the exact density). Ignored for ``kind="flow_grpo"``.

    Returns:
        :class:`SdeStep` with ``prev_sample`` in the dtype of ``sample``; mean, std and log_prob in float32
        (float64 for float64 inputs).
    """
    if kind not in SDE_KINDS:
        raise ValueError(f"unknown SDE kind {kind!r}; valid kinds: {', '.join(SDE_KINDS)}")
    if cps_log_prob not in CPS_LOG_PROBS:
        raise ValueError(f"unknown cps_log_prob {cps_log_prob!r}; valid: {', '.join(CPS_LOG_PROBS)}")
    if noise_level < 0:
        raise ValueError(f"noise_level must be >= 0, got {noise_level}")
    if velocity.shape != sample.shape:
        raise ValueError(f"velocity shape {tuple(velocity.shape)} != sample shape {tuple(sample.shape)}")
    dtype = torch.promote_types(sample.dtype, torch.float32)
    x, v = sample.to(dtype), velocity.to(dtype)
    s, s_next = _per_sample(sigma, x).to(dtype), _per_sample(sigma_next, x).to(dtype)
    moments = _flow_grpo_moments if kind == "flow_grpo" else _cps_moments
    mean, std = moments(v, x, s, s_next, float(noise_level))
    std = torch.as_tensor(std, dtype=dtype, device=x.device).expand_as(s)
    if prev_sample is None:
        if noise is None:
            noise = torch.randn(x.shape, generator=generator, device=x.device, dtype=dtype)
        elif noise.shape != x.shape:
            raise ValueError(f"noise shape {tuple(noise.shape)} != sample shape {tuple(x.shape)}")
        noise = noise.to(device=x.device, dtype=dtype)
        prev_sample = (mean + std * noise).to(sample.dtype)
    elif prev_sample.shape != sample.shape:
        raise ValueError(f"prev_sample shape {tuple(prev_sample.shape)} != sample shape {tuple(sample.shape)}")
    if kind == "cps" and cps_log_prob == "released":
        # Released quantity: no std in it; a deterministic row still reports 0 so nothing is trained on it.
        log_prob = released_cps_log_prob(prev_sample, mean) * (std > 0).reshape(-1).to(dtype)
    elif bool((std > 0).all()):
        log_prob = gaussian_log_prob(prev_sample, mean, std)
    else:
        # A deterministic step (a = 0, or CPS's last step) has no density; report 0 so nothing is trained on it.
        log_prob = torch.zeros(x.shape[0], dtype=dtype, device=x.device)
        positive = (std > 0).reshape(-1)
        if positive.any():
            log_prob[positive] = gaussian_log_prob(prev_sample[positive], mean[positive], std[positive])
    return SdeStep(prev_sample=prev_sample, log_prob=log_prob, mean=mean, std=std)
