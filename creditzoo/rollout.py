"""What credit-assignment algorithms see of a rollout, and what they return.

A batch holds B rows in groups that share a prompt (``group_ids``), each with K trained (SDE-window) steps.
What a row is depends on the rollout's ``shape`` (docs/math.md sections 2, 9.3 and 9.4):

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

ROLLOUT_SHAPES = ("chain", "anchor", "tree")


def shape_mismatch(algorithm: str, needed: str, got: str) -> str:
    """The one-line message for an algorithm applied to a rollout of another shape, naming both shapes."""

    def article(shape: str) -> str:
        return f"an {shape}" if shape[:1] in "aeiou" else f"a {shape}"

    return f"algorithm {algorithm!r} needs {article(needed)} rollout, got {article(got)} rollout"


def _check(name: str, value: torch.Tensor, shape: tuple[int, ...], *, floating: bool) -> None:
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
    if tuple(value.shape) != shape:
        raise ValueError(f"{name} must have shape {list(shape)}, got {list(value.shape)}")
    if floating:
        if not value.is_floating_point():
            raise TypeError(f"{name} must be a floating-point tensor, got {value.dtype}")
        if not bool(torch.isfinite(value).all()):
            raise ValueError(f"{name} contains NaN or infinite values")


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
        shape: "chain", "anchor" or "tree".
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
    shape: str = "chain"
    branch_rewards: torch.Tensor | None = None
    split_steps: tuple[int, ...] | None = None
    log_probs: torch.Tensor | None = None
    iteration: int | None = None

    def __post_init__(self) -> None:
        if self.iteration is not None and (
            not isinstance(self.iteration, int) or isinstance(self.iteration, bool) or self.iteration < 1
        ):
            raise ValueError(f"iteration must be an integer >= 1 (1-based) or None, got {self.iteration!r}")
        if self.shape not in ROLLOUT_SHAPES:
            raise ValueError(f"unknown rollout shape {self.shape!r}; valid: {', '.join(ROLLOUT_SHAPES)}")
        if not isinstance(self.group_ids, torch.Tensor):
            raise TypeError(f"group_ids must be a torch.Tensor, got {type(self.group_ids).__name__}")
        if self.group_ids.ndim != 1 or self.group_ids.dtype != torch.int64:
            raise ValueError(
                f"group_ids must be int64 of shape [B], got {self.group_ids.dtype} {list(self.group_ids.shape)}"
            )
        batch = self.group_ids.shape[0]
        if batch == 0:
            raise ValueError("a rollout needs at least one trajectory (group_ids is empty)")
        if self.shape != "anchor" and self.branch_rewards is not None:
            raise ValueError(f"branch_rewards belong to anchor rollouts, not to a {self.shape} rollout")
        if self.shape != "tree" and self.split_steps is not None:
            raise ValueError(f"split_steps belong to tree rollouts, not to a {self.shape} rollout")
        if self.shape != "chain" and self.completion_rewards is not None:
            raise ValueError(f"completion_rewards [B, K+1] belong to chain rollouts, not to a {self.shape} rollout")
        if self.shape == "anchor":
            self._check_anchor(batch)
        elif self.shape == "tree":
            self._check_tree(batch)
        else:
            self._check_chain(batch)
        if self.final_rewards is not None:
            _check("final_rewards", self.final_rewards, (batch,), floating=True)
        if self.log_probs is not None:
            _check("log_probs", self.log_probs, (batch, int(self.num_steps)), floating=True)

    def _check_chain(self, batch: int) -> None:
        if self.completion_rewards is None and self.final_rewards is None:
            raise ValueError("give completion_rewards [B, K+1], or final_rewards [B] with num_steps=K")
        if self.completion_rewards is not None:
            rewards = self.completion_rewards
            if not isinstance(rewards, torch.Tensor) or rewards.ndim != 2 or rewards.shape[1] < 2:
                shape = list(rewards.shape) if isinstance(rewards, torch.Tensor) else type(rewards).__name__
                raise ValueError(f"completion_rewards must have shape [B={batch}, K+1] with K >= 1, got {shape}")
            steps = rewards.shape[1] - 1
            if self.num_steps is not None and self.num_steps != steps:
                raise ValueError(f"num_steps={self.num_steps} but completion_rewards has K+1={steps + 1} columns")
            _check("completion_rewards", rewards, (batch, steps + 1), floating=True)
            object.__setattr__(self, "num_steps", steps)
            if self.final_rewards is None:
                object.__setattr__(self, "final_rewards", rewards[:, -1])
        else:
            self._infer_steps("final_rewards")

    def _infer_steps(self, what: str) -> None:
        if self.num_steps is None and self.log_probs is not None and self.log_probs.ndim == 2:
            object.__setattr__(self, "num_steps", int(self.log_probs.shape[1]))
        if self.num_steps is None or int(self.num_steps) < 1:
            raise ValueError(f"with {what}, num_steps=K >= 1 is required, got {self.num_steps!r}")

    def _check_anchor(self, batch: int) -> None:
        rewards = self.branch_rewards
        if not isinstance(rewards, torch.Tensor) or rewards.ndim != 3 or 0 in rewards.shape[1:]:
            shape = list(rewards.shape) if isinstance(rewards, torch.Tensor) else type(rewards).__name__
            raise ValueError(f"an anchor rollout needs branch_rewards of shape [B={batch}, K, L], got {shape}")
        steps = rewards.shape[1]
        if self.num_steps is not None and self.num_steps != steps:
            raise ValueError(f"num_steps={self.num_steps} but branch_rewards has K={steps} columns")
        _check("branch_rewards", rewards, (batch, steps, rewards.shape[2]), floating=True)
        object.__setattr__(self, "num_steps", steps)

    def _check_tree(self, batch: int) -> None:
        if self.final_rewards is None:
            raise ValueError("a tree rollout needs final_rewards [B], the leaf rewards")
        self._infer_steps("a tree rollout")
        steps = self.split_steps
        if steps is None or not isinstance(steps, tuple) or not steps:
            raise ValueError(f"a tree rollout needs split_steps, a non-empty tuple of window steps, got {steps!r}")
        if list(steps) != sorted(set(steps)) or not all(isinstance(s, int) and 0 <= s < self.num_steps for s in steps):
            raise ValueError(
                f"split_steps must be distinct increasing window steps in 0..{self.num_steps - 1}, got {steps}"
            )

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
