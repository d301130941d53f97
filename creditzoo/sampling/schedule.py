"""Sigma grids and the SDE window (ALGORITHMS.md section 1 and 2).

The grid reproduces diffusers' ``FlowMatchEulerDiscreteScheduler(shift=shift)`` after
``set_timesteps(num_steps)`` (static shifting, 1000 training timesteps), without importing diffusers.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

_NUM_TRAIN_TIMESTEPS = 1000


def _shift(sigmas: np.ndarray, shift: float) -> np.ndarray:
    return shift * sigmas / (1.0 + (shift - 1.0) * sigmas)


def flow_sigmas(num_steps: int, shift: float = 1.0) -> torch.Tensor:
    """Noise levels of a ``num_steps``-step flow-matching sampler.

    Args:
        num_steps: T, the number of denoising steps (>= 1).
        shift: SD3-style time shift (SD3.5 uses 3.0); must be > 0.

    Returns:
        float32 tensor [T + 1] running from 1.0 down to 0.0, equal to diffusers'
        ``FlowMatchEulerDiscreteScheduler(shift=shift).set_timesteps(num_steps)`` sigmas.
    """
    if int(num_steps) != num_steps or num_steps < 1:
        raise ValueError(f"num_steps must be a positive integer, got {num_steps!r}")
    if not shift > 0:
        raise ValueError(f"shift must be > 0, got {shift!r}")
    n = _NUM_TRAIN_TIMESTEPS
    # The scheduler's training grid: t / n for t = n .. 1, shifted; its ends bound the inference grid.
    train = _shift(np.linspace(1, n, n, dtype=np.float32)[::-1].copy() / n, shift)
    sigma_max, sigma_min = float(train[0]), float(train[-1])
    timesteps = np.linspace(sigma_max * n, sigma_min * n, int(num_steps))
    sigmas = _shift(timesteps / n, shift).astype(np.float32)
    return torch.cat([torch.from_numpy(sigmas), torch.zeros(1)])


@dataclass(frozen=True)
class SdeWindow:
    """K consecutive SDE steps [start, start + size) of a T-step grid; all other steps are ODE steps."""

    start: int
    size: int
    num_steps: int

    @property
    def stop(self) -> int:
        """First step index after the window."""
        return self.start + self.size

    def is_sde(self, step: int) -> bool:
        """Whether grid step ``step`` (0 .. T-1) is a trained SDE step."""
        return self.start <= step < self.stop


def sde_window(num_steps: int, size: int | None = None, start: int = 0) -> SdeWindow:
    """Place the SDE window on a ``num_steps``-step grid.

    Args:
        num_steps: T.
        size: K, the number of SDE (trained) steps; default T - 1 (the last step stays an ODE step).
        start: w, the first SDE step.

    Returns:
        The validated :class:`SdeWindow`.
    """
    if num_steps < 1:
        raise ValueError(f"num_steps must be >= 1, got {num_steps}")
    if size is None:
        size = max(num_steps - 1, 1)
    if size < 1:
        raise ValueError(f"window size must be >= 1, got {size}")
    if start < 0:
        raise ValueError(f"window start must be >= 0, got {start}")
    if start + size > num_steps:
        raise ValueError(
            f"window [{start}, {start + size}) does not fit in {num_steps} steps: need start + size <= num_steps"
        )
    return SdeWindow(start=int(start), size=int(size), num_steps=int(num_steps))
