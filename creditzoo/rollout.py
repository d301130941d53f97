"""What credit-assignment algorithms see of a rollout, and what they return.

A batch holds B rows in groups that share a prompt (``group_ids``), each with K trained (SDE-window) steps.
What a row is depends on the rollout's ``shape`` (docs/math.md sections 2, 9.3 and 9.4), a key of
:data:`creditzoo.shapes.SHAPES`; the shape object checks the fields that are its own:

- ``"chain"``: a row is one trajectory z_0 -> .. -> z_K; for algorithms that need them, K + 1 completion
  rewards R_0 .. R_K (R_k: the reward of completing z_k with the ODE; R_K the trajectory's own final reward).
- ``"anchor"``: a row b = (prompt, i) holds K independent transitions o_j -> c_{k,i} from one ODE anchor;
  ``branch_rewards`` [B, K, L] holds R_{k,i}, one column per completion variant (L = 1 for tempflow, one per
  granularity for g2rpo). The group of (prompt, k) is the C rows of the prompt at column k.
- ``"tree"``: a row is one leaf of a prompt's binary tree (group = tree, 2^|S| leaves). Inside a group, leaves
  are in the order of their branch choices read as a binary number, the first split step the most significant
  bit, so leaves whose choices agree at every split step <= k share the node after window step k.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from creditzoo.shapes import DEFAULT_SHAPE, SHAPES, check_rollout_fields, check_tensor, get_shape

ROLLOUT_SHAPES = tuple(SHAPES)
"""The registered rollout shapes' names (kept for older callers; the table is :data:`creditzoo.shapes.SHAPES`)."""


def shape_mismatch(algorithm: str, needed: str, got: str) -> str:
    """The one-line message for an algorithm applied to a rollout of another shape, naming both shapes."""

    def article(shape: str) -> str:
        return f"an {shape}" if shape[:1] in "aeiou" else f"a {shape}"

    return f"algorithm {algorithm!r} needs {article(needed)} rollout, got {article(got)} rollout"


@dataclass(frozen=True)
class Rollout:
    """Rewards and group structure of B rows with K trained steps.

    Build with keywords: ``Rollout(group_ids=..., completion_rewards=...)`` or
    ``Rollout(group_ids=..., final_rewards=..., num_steps=K)`` (chains);
    ``Rollout(group_ids=..., shape="anchor", branch_rewards=...)``;
    ``Rollout(group_ids=..., shape="tree", final_rewards=..., num_steps=K, split_steps=(0, 2), log_probs=...)``.

    Attributes:
        group_ids: int64 [B]; rows with equal ids share a prompt (labels are arbitrary).
        completion_rewards: float [B, K + 1] (R_0 .. R_K) or None when only final rewards were computed (chains).
        final_rewards: float [B]; defaults to ``completion_rewards[:, -1]``. For trees, the leaf rewards
            (required); for anchor rollouts optional.
        num_steps: K; inferred from ``completion_rewards``, ``branch_rewards`` or ``log_probs`` when given.
        shape: a key of :data:`creditzoo.shapes.SHAPES`: "chain", "anchor" or "tree".
        branch_rewards: float [B, K, L], R_{k,i} of row (prompt, i) at window step k (anchor rollouts only).
        split_steps: sorted window steps at which a tree splits in two (tree rollouts only, required there).
        log_probs: float [B, K] path log-probabilities log p(step k of row b); optional, needed by
            ``branch_grpo`` with ``fusion="path"`` or ``"path_code"``.
        iteration: the 1-based training iteration the rollout was sampled at, for credit that follows a schedule
            (``branch_grpo``'s sliding ``depth_prune``); None when unknown (read as before any schedule moved).
    """

    group_ids: torch.Tensor
    completion_rewards: torch.Tensor | None = None
    final_rewards: torch.Tensor | None = None
    num_steps: int | None = None
    shape: str = DEFAULT_SHAPE
    branch_rewards: torch.Tensor | None = None
    split_steps: tuple[int, ...] | None = None
    log_probs: torch.Tensor | None = None
    iteration: int | None = None

    def __post_init__(self) -> None:
        if self.iteration is not None and (
            not isinstance(self.iteration, int) or isinstance(self.iteration, bool) or self.iteration < 1
        ):
            raise ValueError(f"iteration must be an integer >= 1 (1-based) or None, got {self.iteration!r}")
        get_shape(self.shape)  # an unknown shape fails first, listing the valid ones
        if not isinstance(self.group_ids, torch.Tensor):
            raise TypeError(f"group_ids must be a torch.Tensor, got {type(self.group_ids).__name__}")
        if self.group_ids.ndim != 1 or self.group_ids.dtype != torch.int64:
            raise ValueError(
                f"group_ids must be int64 of shape [B], got {self.group_ids.dtype} {list(self.group_ids.shape)}"
            )
        batch = self.group_ids.shape[0]
        if batch == 0:
            raise ValueError("a rollout needs at least one trajectory (group_ids is empty)")
        for name, value in check_rollout_fields(self).items():  # the shape's own fields, and what they imply
            object.__setattr__(self, name, value)
        if self.final_rewards is not None:
            check_tensor("final_rewards", self.final_rewards, (batch,), floating=True)
        if self.log_probs is not None:
            check_tensor("log_probs", self.log_probs, (batch, int(self.num_steps)), floating=True)

    @property
    def batch_size(self) -> int:
        """B, the number of rows."""
        return self.group_ids.shape[0]

    @property
    def has_completions(self) -> bool:
        """Whether completion rewards R_0 .. R_K are present."""
        return self.completion_rewards is not None


@dataclass(frozen=True)
class Credit:
    """An algorithm's output for a rollout with B trajectories and K trained steps.

    Attributes:
        step_rewards: float [B, K], the reward each step is credited with.
        turning_points: bool [B, K], steps credited with their aggregated long-term reward (TP-GRPO);
            all False for algorithms without turning points.
        advantages: float [B, K], group-normalised step rewards (docs/math.md section 4), before clipping.
        weights: float [B, K] per-(row, step) loss weights, or None for all ones. The learner's policy loss at
            step k is mean_b(weights[b, k] * surrogate[b, k]); ``branch_grpo`` sets 1/m for an edge shared by
            m leaves so that every edge counts once (section 7.4).
    """

    step_rewards: torch.Tensor
    turning_points: torch.Tensor
    advantages: torch.Tensor
    weights: torch.Tensor | None = None

    def __post_init__(self) -> None:
        shape = tuple(self.step_rewards.shape)
        if len(shape) != 2:
            raise ValueError(f"step_rewards must have shape [B, K], got {list(shape)}")
        if self.turning_points.dtype != torch.bool:
            raise TypeError(f"turning_points must be bool, got {self.turning_points.dtype}")
        for name in ("turning_points", "advantages", "weights"):
            value = getattr(self, name)
            if value is None:
                continue
            if tuple(value.shape) != shape:
                raise ValueError(f"{name} must have shape {list(shape)} like step_rewards, got {list(value.shape)}")
