"""The record that registers a credit-assignment algorithm: everything the zoo knows about it, in one place.

An :class:`AlgorithmSpec` is what ``ALGORITHMS`` maps a name to (gymnasium's ``EnvSpec`` plays the same part for
environments): the pure kernel and what it needs from a rollout, its paper and its cost. Every field that changes
what a run does (the rollout shape, whether completions are paid for) is required, so forgetting one is an error
at import time, not a run that silently pays for completions it does not use.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from creditzoo.rollout import Credit
from creditzoo.shapes import get_shape

AlgorithmFn = Callable[..., Credit]
"""A pure kernel ``(rollout, *, **options) -> Credit``; options are keyword-only with defaults."""

STEP_WEIGHTS = ("none", "noise")
"""Step weightings an algorithm can train with by default (docs/math.md section 9.1)."""


@dataclass(frozen=True)
class AlgorithmSpec:
    """One registered credit-assignment algorithm.

    Attributes:
        fn: the kernel, ``(rollout, **options) -> Credit``, or a ``functools.partial`` of one (a variant).
        shape: the rollout shape it reads, a key of :data:`creditzoo.shapes.SHAPES`: "chain", "anchor" or "tree".
        needs_completions: whether the rollout must carry completion rewards (R_0 .. R_K, or R_{k,i}); when False
            the environment skips completions and their model calls.
        paper: where it comes from, e.g. "arXiv 2602.06422".
        cost: its extra model calls in T steps, window start w and size K (docs/math.md sections 7 and 9).
        description: one line for ``creditzoo algos``: what it credits each step with.
        default_step_weight: the step weighting it trains with unless told otherwise ("none" or "noise").
    """

    fn: AlgorithmFn
    shape: str
    needs_completions: bool
    paper: str
    cost: str
    description: str
    default_step_weight: str = "none"

    def __post_init__(self) -> None:
        if not callable(self.fn):
            raise ValueError(f"AlgorithmSpec.fn must be callable, got {self.fn!r}")
        get_shape(self.shape)  # an unknown shape fails here, listing the valid ones
        if not isinstance(self.needs_completions, bool):
            raise ValueError(f"AlgorithmSpec.needs_completions must be True or False, got {self.needs_completions!r}")
        for name in ("paper", "cost", "description"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name):
                raise ValueError(f"AlgorithmSpec.{name} must be a non-empty string")
        if self.default_step_weight not in STEP_WEIGHTS:
            raise ValueError(
                f"unknown default_step_weight {self.default_step_weight!r}; valid: {', '.join(STEP_WEIGHTS)}"
            )
