"""Sibling noise at a tree's split steps (BranchGRPO, Li et al. 2025, arXiv 2509.06040; docs/math.md section 9.4).

At a split step every tree node draws two children, ``child_b = mean + std * eps_b`` (b = 0, 1), with the SDE's
own mean and std (section 1). ``split_noise`` says what eps_b is there (elsewhere it is always a plain N(0, I)):

- ``iid``: eps_b = eta_b, independent standard normals (the default; the released code's independent draws).
- ``paper:S``: the paper's sibling correlation, eps_b = (xi + S * eta_b) / sqrt(1 + S^2) with xi shared by the
  two siblings. Marginally N(0, I), so the recorded log-probs are the policy's; siblings correlate 1 / (1 + S^2).
- ``code:C``: the released launch script (C = 4), eps_b = C * eta_b, while every log-prob (at sampling and in the
  update) keeps the unscaled std. The samples are then not drawn from the policy that scores them: off-policy on
  purpose, a reproduction of the released code only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

SPLIT_NOISE_KINDS = ("iid", "paper", "code")
SPLIT_NOISE_FORMS = ("iid", "paper:S", "code:C")
"""The spellings of ``split_noise``, for error messages."""


@dataclass(frozen=True)
class SplitNoise:
    """A parsed ``split_noise``: its kind and its number (S of ``paper:S``, C of ``code:C``, 1 for ``iid``).

    Attributes:
        kind: "iid", "paper" or "code".
        scale: S (paper) or C (code), a finite number > 0; 1.0 for iid.
    """

    kind: str = "iid"
    scale: float = 1.0

    @property
    def shares_noise(self) -> bool:
        """Whether siblings need a shared draw xi (``paper:S``)."""
        return self.kind == "paper"

    @property
    def off_policy(self) -> bool:
        """Whether split-step samples come from another distribution than the one that scores them (``code:C``)."""
        return self.kind == "code" and self.scale != 1.0

    @property
    def note(self) -> str:
        """One sentence a run records about itself when :attr:`off_policy` (empty otherwise)."""
        if not self.off_policy:
            return ""
        return (
            f"split_noise=code:{self.scale:g} samples split steps with {self.scale:g}x the SDE noise but scores every "
            "log-prob with the unscaled std (BranchGRPO's launch script): off-policy on purpose, a reproduction only"
        )

    def sibling_noise(self, eta: torch.Tensor, shared: torch.Tensor | None = None) -> torch.Tensor:
        """The noise eps of the children of a split step from standard normal draws.

        Args:
            eta: [2N, *S] one independent draw per child, children 2q and 2q + 1 of parent q next to each other.
            shared: [N, *S] one draw per parent (xi), required for ``paper:S`` and ignored otherwise.

        Returns:
            [2N, *S] eps for ``child = mean + std * eps``.
        """
        if self.kind == "code":
            return eta * self.scale
        if self.kind == "paper":
            if shared is None or shared.shape[0] * 2 != eta.shape[0]:
                raise ValueError(f"split_noise=paper:{self.scale:g} needs one shared draw per parent")
            return (shared.repeat_interleave(2, dim=0) + self.scale * eta) / math.sqrt(1.0 + self.scale**2)
        return eta


def parse_split_noise(spec: str | SplitNoise | None) -> SplitNoise:
    """Parse ``split_noise``: ``iid`` (or None), ``paper:S`` or ``code:C`` with S, C finite numbers > 0.

    Raises:
        ValueError: one line naming the valid forms.
    """
    if isinstance(spec, SplitNoise):
        return spec
    if spec is None or spec == "iid":
        return SplitNoise()
    problem = f"unknown split_noise {spec!r}; valid: {', '.join(SPLIT_NOISE_FORMS)} (S, C numbers > 0)"
    if not isinstance(spec, str) or spec.count(":") != 1:
        raise ValueError(problem)
    kind, number = spec.split(":")
    try:
        scale = float(number)
    except ValueError:
        raise ValueError(problem) from None
    if kind not in ("paper", "code") or not math.isfinite(scale) or scale <= 0:
        raise ValueError(problem)
    return SplitNoise(kind=kind, scale=scale)
