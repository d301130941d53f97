"""The zoo: interchangeable credit-assignment algorithms over one rollout format.

``ALGORITHMS`` is the table of contents: a name maps to a pure function ``(rollout, **options) -> Credit``;
variants are ``functools.partial`` entries. :func:`get_algorithm` binds and checks options and also accepts
``"package.module:function"`` for an algorithm that lives outside the package.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from creditzoo.algorithms.flow_grpo import flow_grpo
from creditzoo.algorithms.incremental import incremental
from creditzoo.algorithms.tp_grpo import tp_grpo
from creditzoo.registry import lookup
from creditzoo.rollout import Credit, Rollout

AlgorithmFn = Callable[..., Credit]

ALGORITHMS: dict[str, AlgorithmFn] = {
    "flow_grpo": flow_grpo,
    "incremental": incremental,
    "tp_grpo": tp_grpo,
    "tp_grpo_strict": functools.partial(tp_grpo, strict=True),
    "tp_grpo_noinit": functools.partial(tp_grpo, initial_step=False),
    "tp_grpo_strict_noinit": functools.partial(tp_grpo, strict=True, initial_step=False),
}

DESCRIPTIONS: dict[str, str] = {
    "flow_grpo": "Flow-GRPO: terminal reward R_K broadcast to every step",
    "incremental": "incremental step reward d_k = R_{k+1} - R_k",
    "tp_grpo": "TP-GRPO w/o constraint (Def. 4.1) + initial step (Rem. 4.2)",
    "tp_grpo_strict": "TP-GRPO w/ consistency constraint (Def. 5.1) + initial step",
    "tp_grpo_noinit": "TP-GRPO w/o constraint, no initial-step extension",
    "tp_grpo_strict_noinit": "TP-GRPO w/ consistency constraint, no initial-step extension",
}


def _base_function(fn: AlgorithmFn) -> Callable[..., Any]:
    while isinstance(fn, functools.partial):
        fn = fn.func
    return fn


@dataclass(frozen=True)
class Algorithm:
    """A registered algorithm with its options bound: call it on a :class:`Rollout`.

    Attributes:
        name: registry name or "package.module:function".
        fn: the underlying function (or partial).
        options: keyword options bound at construction.
        needs_completions: whether the rollout must carry completion rewards R_0 .. R_K.
    """

    name: str
    fn: AlgorithmFn
    options: dict[str, Any] = field(default_factory=dict)
    needs_completions: bool = True

    def __call__(self, rollout: Rollout) -> Credit:
        """Assign credit: step_rewards, turning_points and advantages, each [B, K]."""
        return self.fn(rollout, **self.options)


def option_names(fn: AlgorithmFn) -> list[str]:
    """Keyword-only options an algorithm accepts."""
    parameters = inspect.signature(_base_function(fn)).parameters.values()
    return [p.name for p in parameters if p.kind is inspect.Parameter.KEYWORD_ONLY]


def get_algorithm(name: str, **options: Any) -> Algorithm:
    """Look up an algorithm and bind its options.

    Args:
        name: a key of ``ALGORITHMS`` or "package.module:function".
        **options: keyword options of that algorithm (e.g. ``std_mode="global"``, ``balance=False``).

    Returns:
        An :class:`Algorithm`, checked by a dry run of its option validation.

    Raises:
        ValueError: unknown name or option (the message lists the valid ones), or an invalid option value.
    """
    fn = lookup(name, ALGORITHMS, "algorithm")
    if not callable(fn):
        raise ValueError(f"algorithm {name!r} is not callable")
    valid = option_names(fn)
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise ValueError(f"unknown option(s) {', '.join(unknown)} for algorithm {name!r}; valid: {', '.join(valid)}")
    needs = bool(getattr(_base_function(fn), "needs_completions", True))
    algorithm = Algorithm(name=name, fn=fn, options=dict(options), needs_completions=needs)
    _validate(algorithm)
    return algorithm


def _validate(algorithm: Algorithm) -> None:
    """Run the algorithm once on a two-sample rollout so bad option values fail now, not mid-training."""
    import torch

    probe = Rollout(
        group_ids=torch.zeros(2, dtype=torch.int64), completion_rewards=torch.tensor([[0.0, 1.0], [1.0, 0.0]])
    )
    algorithm(probe)


__all__ = ["ALGORITHMS", "DESCRIPTIONS", "Algorithm", "get_algorithm", "option_names"]
