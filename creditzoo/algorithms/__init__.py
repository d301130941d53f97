"""The zoo: interchangeable credit-assignment algorithms over one rollout format.

``ALGORITHMS`` is the table of contents: a name maps to an :class:`~creditzoo.algorithms.spec.AlgorithmSpec`, the
one record that holds the pure kernel ``(rollout, **options) -> Credit``, the rollout shape it reads, whether it
needs completion rewards, its paper, its cost (extra model calls in T steps, window start w and size K,
docs/math.md sections 7 and 9) and its one-line description. Variants are records whose kernel is a
``functools.partial``. Adding an algorithm is one file (the kernel and its record) and one entry here.
:func:`get_algorithm` binds and checks options; it also accepts ``"package.module:RECORD"`` for an algorithm that
lives outside the package (the attribute must be an ``AlgorithmSpec``).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from creditzoo.algorithms.branch_grpo import BRANCH_GRPO
from creditzoo.algorithms.branch_pruning import check_pruning
from creditzoo.algorithms.dense_value import DENSE_VALUE
from creditzoo.algorithms.flow_grpo import FLOW_GRPO
from creditzoo.algorithms.g2rpo import G2RPO
from creditzoo.algorithms.incremental import INCREMENTAL
from creditzoo.algorithms.smoothed import INCREMENTAL_RTS, TP_GRPO_STRICT_RTS
from creditzoo.algorithms.spec import AlgorithmFn, AlgorithmSpec
from creditzoo.algorithms.tempflow import TEMPFLOW
from creditzoo.algorithms.tp_grpo import (
    TP_GRPO,
    TP_GRPO_NOINIT,
    TP_GRPO_RELEASE,
    TP_GRPO_STRICT,
    TP_GRPO_STRICT_NOINIT,
    TP_GRPO_STRICT_RELEASE,
)
from creditzoo.algorithms.tp_margin import TP_MARGIN
from creditzoo.algorithms.tp_prob import TP_PROB
from creditzoo.registry import lookup
from creditzoo.rollout import Credit, Rollout, shape_mismatch
from creditzoo.shapes import get_shape
from creditzoo.shapes.tree import check_split_steps, default_split_steps

ALGORITHMS: dict[str, AlgorithmSpec] = {
    "flow_grpo": FLOW_GRPO,
    "incremental": INCREMENTAL,
    "tp_grpo": TP_GRPO,
    "tp_grpo_strict": TP_GRPO_STRICT,
    "tp_grpo_noinit": TP_GRPO_NOINIT,
    "tp_grpo_strict_noinit": TP_GRPO_STRICT_NOINIT,
    "tp_grpo_release": TP_GRPO_RELEASE,
    "tp_grpo_strict_release": TP_GRPO_STRICT_RELEASE,
    "dense_value": DENSE_VALUE,
    "tempflow": TEMPFLOW,
    "g2rpo": G2RPO,
    "branch_grpo": BRANCH_GRPO,
    "tp_margin": TP_MARGIN,
    "tp_prob": TP_PROB,
    "incremental_rts": INCREMENTAL_RTS,
    "tp_grpo_strict_rts": TP_GRPO_STRICT_RTS,
}


def base_function(fn: AlgorithmFn) -> Callable[..., Any]:
    """The kernel under any ``functools.partial`` layers of a variant."""
    while isinstance(fn, functools.partial):
        fn = fn.func
    return fn


@dataclass(frozen=True)
class Algorithm:
    """A registered algorithm with its options bound: call it on a :class:`Rollout`.

    Attributes:
        name: registry name or "package.module:RECORD".
        spec: its record (kernel, shape, completions, paper, cost, description).
        options: keyword options bound at construction.
    """

    name: str
    spec: AlgorithmSpec
    options: dict[str, Any] = field(default_factory=dict)

    def __call__(self, rollout: Rollout) -> Credit:
        """Assign credit: step_rewards, turning_points and advantages, each [B, K] (and weights, if any).

        Raises:
            ValueError: the rollout's shape is not the one this algorithm needs (the message names both).
        """
        if rollout.shape != self.rollout_shape:
            raise ValueError(shape_mismatch(self.name, self.rollout_shape, rollout.shape))
        return self.fn(rollout, **self.options)

    @property
    def fn(self) -> AlgorithmFn:
        """The kernel (or partial) the record registers."""
        return self.spec.fn

    @property
    def needs_completions(self) -> bool:
        """Whether the rollout must carry completion rewards (R_0 .. R_K, or R_{k,i})."""
        return self.spec.needs_completions

    @property
    def rollout_shape(self) -> str:
        """The rollout shape it needs: "chain", "anchor" or "tree"."""
        return self.spec.shape

    @property
    def paper(self) -> str:
        """The paper it comes from (arXiv id)."""
        return self.spec.paper

    @property
    def completion_cost(self) -> str:
        """Its extra model calls for T steps, window start w and size K (docs/math.md sections 7, 9)."""
        return self.spec.cost

    @property
    def default_step_weight(self) -> str:
        """The step weighting it trains with unless told otherwise ("none", or "noise" for tempflow)."""
        return self.spec.default_step_weight

    @property
    def bound_options(self) -> dict[str, Any]:
        """Every keyword option with its value: the function's defaults, then partial entries, then ``options``."""
        return resolved_options(self.fn, self.options)


def algorithm_spec(name: str) -> AlgorithmSpec:
    """The record of a registered name or of a ``"package.module:RECORD"`` path.

    Raises:
        ValueError: unknown name (listing the valid ones), or a path whose attribute is not an AlgorithmSpec.
    """
    spec = lookup(name, ALGORITHMS, "algorithm")
    if not isinstance(spec, AlgorithmSpec):
        raise ValueError(
            f"algorithm {name!r} is not an AlgorithmSpec (a plain function says nothing about the rollout it needs); "
            "register AlgorithmSpec(fn, shape, needs_completions, paper, cost, description)"
        )
    return spec


def option_names(fn: AlgorithmFn) -> list[str]:
    """Keyword-only options an algorithm accepts."""
    parameters = inspect.signature(base_function(fn)).parameters.values()
    return [p.name for p in parameters if p.kind is inspect.Parameter.KEYWORD_ONLY]


def resolved_options(fn: AlgorithmFn, options: dict[str, Any]) -> dict[str, Any]:
    """Keyword options of ``fn`` with their values: signature defaults, then partial keywords, then ``options``."""
    parameters = inspect.signature(base_function(fn)).parameters.values()
    values = {p.name: p.default for p in parameters if p.kind is inspect.Parameter.KEYWORD_ONLY}
    partials = []
    while isinstance(fn, functools.partial):
        partials.append(fn.keywords)
        fn = fn.func
    for keywords in reversed(partials):
        values.update(keywords)
    values.update(options)
    return values


def get_algorithm(name: str, **options: Any) -> Algorithm:
    """Look up an algorithm and bind its options.

    Args:
        name: a key of ``ALGORITHMS`` or "package.module:RECORD" (an AlgorithmSpec).
        **options: keyword options of that algorithm (e.g. ``std_mode="global"``, ``balance=False``).

    Returns:
        An :class:`Algorithm`, checked by a dry run of its option validation.

    Raises:
        ValueError: unknown name or option (the message lists the valid ones), or an invalid option value.
    """
    spec = algorithm_spec(name)
    valid = option_names(spec.fn)
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise ValueError(f"unknown option(s) {', '.join(unknown)} for algorithm {name!r}; valid: {', '.join(valid)}")
    algorithm = Algorithm(name=name, spec=spec, options=dict(options))
    _validate(algorithm)
    return algorithm


def _probe(algorithm: Algorithm) -> Rollout:
    """A small rollout of the algorithm's shape, fitted to its options (anchor width, tree splits)."""
    return Rollout(**get_shape(algorithm.rollout_shape).example_fields(algorithm.bound_options))


def _validate(algorithm: Algorithm) -> None:
    """Run the algorithm once on a small rollout of its shape so bad option values fail now, not mid-training."""
    algorithm(_probe(algorithm))


__all__ = [
    "ALGORITHMS",
    "Algorithm",
    "AlgorithmSpec",
    "algorithm_spec",
    "base_function",
    "check_pruning",
    "check_split_steps",
    "default_split_steps",
    "get_algorithm",
    "option_names",
    "resolved_options",
]
