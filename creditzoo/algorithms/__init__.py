"""The zoo: interchangeable credit-assignment algorithms over one rollout format.

``ALGORITHMS`` is the table of contents: a name maps to a pure function ``(rollout, **options) -> Credit``;
variants are ``functools.partial`` entries. :func:`get_algorithm` binds and checks options and also accepts
``"package.module:function"`` for an algorithm that lives outside the package.

Each function declares, as attributes, what it needs and where it comes from: ``needs_completions``,
``rollout_shape`` ("chain", "anchor" or "tree", see :class:`creditzoo.rollout.Rollout`), ``paper`` and
``completion_cost`` (its extra model calls in T steps, window start w and size K, docs/math.md sections 7, 9).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from creditzoo.algorithms.branch_grpo import branch_grpo, check_split_steps, default_split_steps
from creditzoo.algorithms.dense_value import dense_value
from creditzoo.algorithms.flow_grpo import flow_grpo
from creditzoo.algorithms.g2rpo import g2rpo
from creditzoo.algorithms.incremental import incremental
from creditzoo.algorithms.tempflow import tempflow
from creditzoo.algorithms.tp_grpo import tp_grpo
from creditzoo.registry import lookup
from creditzoo.rollout import ROLLOUT_SHAPES, Credit, Rollout, shape_mismatch

AlgorithmFn = Callable[..., Credit]

ALGORITHMS: dict[str, AlgorithmFn] = {
    "flow_grpo": flow_grpo,
    "incremental": incremental,
    "tp_grpo": tp_grpo,
    "tp_grpo_strict": functools.partial(tp_grpo, strict=True),
    "tp_grpo_noinit": functools.partial(tp_grpo, initial_step=False),
    "tp_grpo_strict_noinit": functools.partial(tp_grpo, strict=True, initial_step=False),
    "dense_value": dense_value,
    "tempflow": tempflow,
    "g2rpo": g2rpo,
    "branch_grpo": branch_grpo,
}

DESCRIPTIONS: dict[str, str] = {
    "flow_grpo": "Flow-GRPO: terminal reward R_K broadcast to every step",
    "incremental": "incremental step reward d_k = R_{k+1} - R_k",
    "tp_grpo": "TP-GRPO w/o constraint (Def. 4.1) + initial step (Rem. 4.2)",
    "tp_grpo_strict": "TP-GRPO w/ consistency constraint (Def. 5.1) + initial step",
    "tp_grpo_noinit": "TP-GRPO w/o constraint, no initial-step extension",
    "tp_grpo_strict_noinit": "TP-GRPO w/ consistency constraint, no initial-step extension",
    "dense_value": "DenseGRPO's dense reward baseline: R_{k+1} as the step reward",
    "tempflow": "TempFlow-GRPO: C SDE children of an ODE anchor per step, noise-aware step weights",
    "g2rpo": "G2RPO: anchor children completed at several granularities, advantages summed",
    "branch_grpo": "BranchGRPO: binary tree, node values fused from leaves, depth-wise advantages",
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
        needs_completions: whether the rollout must carry completion rewards (R_0 .. R_K, or R_{k,i}).
        rollout_shape: the rollout shape it needs: "chain", "anchor" or "tree".
    """

    name: str
    fn: AlgorithmFn
    options: dict[str, Any] = field(default_factory=dict)
    needs_completions: bool = True
    rollout_shape: str = "chain"

    def __call__(self, rollout: Rollout) -> Credit:
        """Assign credit: step_rewards, turning_points and advantages, each [B, K] (and weights, if any).

        Raises:
            ValueError: the rollout's shape is not the one this algorithm needs (the message names both).
        """
        if rollout.shape != self.rollout_shape:
            raise ValueError(shape_mismatch(self.name, self.rollout_shape, rollout.shape))
        return self.fn(rollout, **self.options)

    @property
    def paper(self) -> str:
        """The paper it comes from (arXiv id), "?" if the function does not say."""
        return str(getattr(_base_function(self.fn), "paper", "?"))

    @property
    def completion_cost(self) -> str:
        """Its extra model calls for T steps, window start w and size K (docs/math.md sections 7, 9)."""
        return str(getattr(_base_function(self.fn), "completion_cost", "?"))

    @property
    def default_step_weight(self) -> str:
        """The step weighting it trains with unless told otherwise ("none", or "noise" for tempflow)."""
        return str(getattr(_base_function(self.fn), "default_step_weight", "none"))

    @property
    def bound_options(self) -> dict[str, Any]:
        """Every keyword option with its value: the function's defaults, then partial entries, then ``options``."""
        return resolved_options(self.fn, self.options)


def option_names(fn: AlgorithmFn) -> list[str]:
    """Keyword-only options an algorithm accepts."""
    parameters = inspect.signature(_base_function(fn)).parameters.values()
    return [p.name for p in parameters if p.kind is inspect.Parameter.KEYWORD_ONLY]


def resolved_options(fn: AlgorithmFn, options: dict[str, Any]) -> dict[str, Any]:
    """Keyword options of ``fn`` with their values: signature defaults, then partial keywords, then ``options``."""
    parameters = inspect.signature(_base_function(fn)).parameters.values()
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
    base = _base_function(fn)
    shape = str(getattr(base, "rollout_shape", "chain"))
    if shape not in ROLLOUT_SHAPES:
        raise ValueError(f"algorithm {name!r} declares rollout_shape {shape!r}; valid: {', '.join(ROLLOUT_SHAPES)}")
    needs = bool(getattr(base, "needs_completions", True))
    algorithm = Algorithm(name=name, fn=fn, options=dict(options), needs_completions=needs, rollout_shape=shape)
    _validate(algorithm)
    return algorithm


def _probe(algorithm: Algorithm) -> Rollout:
    """A small rollout of the algorithm's shape (anchor width and tree splits follow its options)."""
    import torch

    options = algorithm.bound_options
    if algorithm.rollout_shape == "anchor":
        granularities = options.get("granularities")
        width = len(granularities) if isinstance(granularities, (tuple, list)) and granularities else 1
        rewards = torch.arange(2 * 2 * width, dtype=torch.float32).view(2, 2, width) % 3  # [B=2, K=2, L]
        return Rollout(group_ids=torch.zeros(2, dtype=torch.int64), shape="anchor", branch_rewards=rewards)
    if algorithm.rollout_shape == "tree":
        splits = options.get("split_steps")
        valid = isinstance(splits, (tuple, list)) and splits and all(isinstance(s, int) for s in splits)
        steps = max(9, max(splits) + 1) if valid else 9
        splits = check_split_steps(splits, steps)  # a bad split set fails here, with the valid range
        leaves = 2 ** len(splits)
        return Rollout(
            group_ids=torch.zeros(leaves, dtype=torch.int64),
            shape="tree",
            final_rewards=torch.arange(leaves, dtype=torch.float32),
            num_steps=steps,
            split_steps=splits,
            log_probs=torch.zeros(leaves, steps),
        )
    return Rollout(
        group_ids=torch.zeros(2, dtype=torch.int64), completion_rewards=torch.tensor([[0.0, 1.0], [1.0, 0.0]])
    )


def _validate(algorithm: Algorithm) -> None:
    """Run the algorithm once on a small rollout of its shape so bad option values fail now, not mid-training."""
    algorithm(_probe(algorithm))


__all__ = [
    "ALGORITHMS",
    "DESCRIPTIONS",
    "Algorithm",
    "check_split_steps",
    "default_split_steps",
    "get_algorithm",
    "option_names",
    "resolved_options",
]
