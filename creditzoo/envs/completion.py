"""Completion modes: how an intermediate latent z_k is turned into an image to score (docs/math.md section 2).

- ``ode``: all remaining steps of the sampling grid with the Euler ODE (the paper's choice, the default).
- ``ode:N``: N Euler steps over the remaining sigma range, on a sub-grid of the sampling grid.
- ``x0``: decode x0_hat = z_k - sigma_k * v_k from the velocity already computed at z_k (no extra model call).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

COMPLETION_FORMS = ("ode", "ode:N", "x0")


@dataclass(frozen=True)
class CompletionMode:
    """A parsed completion mode: ``kind`` is "ode" or "x0"; ``steps`` caps the ODE steps (None: all)."""

    kind: str
    steps: int | None = None

    def __str__(self) -> str:
        return f"ode:{self.steps}" if self.steps is not None else self.kind

    def sub_grid(self, start: int, num_steps: int) -> torch.Tensor:
        """Grid indices a completion from grid position ``start`` visits, ending at ``num_steps`` (sigma 0).

        Returns:
            int64 [L] increasing indices into the (T + 1)-long sigma grid, first ``start``, last ``num_steps``.
        """
        remaining = num_steps - start
        if self.steps is None or self.steps >= remaining:
            return torch.arange(start, num_steps + 1)
        points = torch.linspace(start, num_steps, self.steps + 1, dtype=torch.float64).round().long()
        return torch.unique_consecutive(points)


def parse_completion_mode(text: str) -> CompletionMode:
    """Parse "ode", "ode:N" (N >= 1) or "x0".

    Raises:
        ValueError: one line naming the problem and the valid forms.
    """
    value = text.strip().lower()
    if value in ("ode", "x0"):
        return CompletionMode(kind=value)
    if value.startswith("ode:"):
        count = value[4:]
        if count.isdigit() and int(count) >= 1:
            return CompletionMode(kind="ode", steps=int(count))
    raise ValueError(f"malformed completion mode {text!r}; valid forms: {', '.join(COMPLETION_FORMS)} (N >= 1)")
