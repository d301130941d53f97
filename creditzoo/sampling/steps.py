"""Which window steps train, and how much: step schedules and step weights (docs/math.md section 9.1).

Options of every algorithm, as pure functions of (spec, iteration, seed):

- Sliding window, ``window_schedule="slide:W:TAU:S"`` (MixGRPO, Li et al. 2025, arXiv 2507.21802): a window of
  W SDE steps starting at c; c = 0 at iteration 1 and grows by S every TAU iterations; when c + W > T - 1, c
  returns to 0. (The released code stops the window two steps early and can make it empty; this does neither.)
- Random step subset, ``train_steps="random:F"`` (DanceGRPO, Xue et al. 2025, arXiv 2505.07818): each sample
  trains max(1, floor(F * K)) of its K window steps (released: ``int(len(timesteps) * timestep_fraction)``),
  drawn from (seed, iteration, sample) alone, so the draw is repeatable and does not depend on the batch's order
  or size.
- Noise-aware step weights, ``step_weight="noise"`` (TempFlow-GRPO, He et al. 2025, arXiv 2508.04324): the policy
  term at window step k is multiplied by w_k = std_k / mean_{j in window}(std_j), std_k the per-element std of
  that SDE step (section 1).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from creditzoo.sampling.sde import sde_step

STEP_WEIGHTS = ("none", "noise")
_MASK32 = 0xFFFFFFFF


@dataclass(frozen=True)
class SlideSchedule:
    """MixGRPO's sliding window: W steps, start moving by S every TAU iterations, cycling on T - 1 steps.

    Attributes:
        size: W, the window size.
        every: TAU, iterations per position.
        stride: S, steps the window moves.
        num_steps: T, steps of the sampling grid.
    """

    size: int
    every: int
    stride: int
    num_steps: int

    @property
    def positions(self) -> int:
        """How many distinct window starts the cycle visits: floor((T - 1 - W) / S) + 1."""
        return (self.num_steps - 1 - self.size) // self.stride + 1

    def start(self, iteration: int) -> int:
        """The window start c at 1-based ``iteration``."""
        if iteration < 1:
            raise ValueError(f"iterations count from 1, got {iteration}")
        return ((iteration - 1) // self.every % self.positions) * self.stride


def parse_window_schedule(spec: str, num_steps: int) -> SlideSchedule:
    """Parse ``"slide:W:TAU:S"`` for a T-step grid.

    Args:
        spec: the schedule, e.g. "slide:4:25:1".
        num_steps: T.

    Returns:
        :class:`SlideSchedule`.

    Raises:
        ValueError: not of the form slide:W:TAU:S with integers W, TAU, S >= 1, or W > T - 1 (the window
            cannot fit before the last, ODE, step).
    """
    kind, _, rest = str(spec).partition(":")
    parts = rest.split(":")
    if kind != "slide" or len(parts) != 3 or not all(p.strip().lstrip("-").isdigit() for p in parts):
        raise ValueError(f"window schedule must be slide:W:TAU:S with integers W, TAU, S >= 1, got {spec!r}")
    size, every, stride = (int(p) for p in parts)
    if min(size, every, stride) < 1:
        raise ValueError(f"window schedule {spec!r}: W, TAU and S must each be >= 1")
    if size > num_steps - 1:
        raise ValueError(
            f"window schedule {spec!r}: W={size} cannot fit T={num_steps} steps; valid W: 1..{num_steps - 1}"
        )
    return SlideSchedule(size=size, every=every, stride=stride, num_steps=int(num_steps))


def parse_train_steps(spec: str) -> float:
    """Parse ``"random:F"``, the fraction of window steps each sample trains.

    Raises:
        ValueError: not random:F, or F outside (0, 1].
    """
    kind, _, value = str(spec).partition(":")
    try:
        fraction = float(value)
    except ValueError:
        fraction = float("nan")
    if kind != "random" or not 0 < fraction <= 1:
        raise ValueError(f"train_steps must be random:F with F in (0, 1], got {spec!r}")
    return fraction


def _mix(x: torch.Tensor) -> torch.Tensor:
    """A 32-bit integer hash (xor-shift-multiply), in int64 arithmetic that cannot overflow."""
    x = ((x >> 16) ^ x) * 0x45D9F3B & _MASK32
    x = ((x >> 16) ^ x) * 0x45D9F3B & _MASK32
    return (x >> 16) ^ x


def _combine(h: torch.Tensor, value: torch.Tensor | int) -> torch.Tensor:
    return _mix((h * 0x27D4EB2D + (torch.as_tensor(value, dtype=torch.int64) & _MASK32)) & _MASK32)


def train_step_mask(
    fraction: float, num_steps: int, *, seed: int, iteration: int, samples: torch.Tensor
) -> torch.Tensor:
    """DanceGRPO's random step subset: which window steps each sample trains.

    Args:
        fraction: F in (0, 1].
        num_steps: K, window steps.
        seed: the run seed.
        iteration: the iteration.
        samples: int64 [B] sample indices within the iteration (row b is usually sample b).

    Returns:
        bool [B, K] with exactly max(1, floor(F * K)) True entries per row (F = 0.5, K = 9 trains 4, as the
        released DanceGRPO code does); row b depends only on (seed, iteration, samples[b]).
    """
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    count = max(1, math.floor(fraction * num_steps))  # the released int(K * F), in the same float arithmetic
    base = _combine(_combine(_mix(torch.tensor(int(seed) & _MASK32)), int(iteration)), 0)
    rows = _combine(base, samples.to(torch.int64).cpu()).unsqueeze(1)  # [B, 1]
    keys = _combine(rows, torch.arange(num_steps).unsqueeze(0))  # [B, K]
    order = torch.argsort(keys, dim=1, stable=True)
    mask = torch.zeros(keys.shape, dtype=torch.bool)
    mask.scatter_(1, order[:, :count], True)
    return mask


def noise_step_weights(stds: torch.Tensor) -> torch.Tensor:
    """TempFlow-GRPO's noise-aware weights w_k = std_k / mean(std) over the window.

    Args:
        stds: float [K], the per-element std of each window step's SDE (all > 0).

    Returns:
        float [K], averaging 1. Example: [0.6, 0.3, 0.3] -> [1.5, 0.75, 0.75].
    """
    if stds.ndim != 1 or not bool((stds > 0).all()):
        raise ValueError(f"stds must be a [K] tensor of positive values, got {stds.tolist()}")
    return stds / stds.mean()


def window_step_stds(
    sigmas: torch.Tensor, start: int, size: int, *, noise_level: float, kind: str = "flow_grpo"
) -> torch.Tensor:
    """The per-element std of the SDE at window steps start .. start + size - 1.

    Args:
        sigmas: float [T + 1] grid.
        start: w, the first window step.
        size: K.
        noise_level: a.
        kind: "flow_grpo" or "cps".

    Returns:
        float [K].
    """
    sigma = sigmas[start : start + size].double()  # [K]
    sigma_next = sigmas[start + 1 : start + size + 1].double()  # [K]
    dummy = torch.zeros(size, 1, dtype=torch.float64)
    step = sde_step(dummy, dummy, sigma, sigma_next, noise_level=noise_level, kind=kind, prev_sample=dummy)
    return step.std.reshape(size).float()


def parse_step_weight(spec: str) -> str:
    """Validate a step-weight name ("none" or "noise")."""
    if spec not in STEP_WEIGHTS:
        raise ValueError(f"unknown step_weight {spec!r}; valid: {', '.join(STEP_WEIGHTS)}")
    return spec
