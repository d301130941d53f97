"""BranchGRPO's pruning: which tree edges the update trains (docs/math.md section 9.4, "Pruning").

Li et al. 2025, "BranchGRPO" (arXiv 2509.06040), as its released code does it (Fredreic1849/BranchGRPO,
``fastvideo/train_branchgrpo_flux.py``). Pruning changes no value and no advantage: it removes edges from the
loss after credit is assigned, and the loss then averages over the edges that are left.

- ``depth_prune="D1,D2,..."``: edges whose child sits at one of these depths are not trained. The child of window
  step k is at depth k + 1. ``"D1,..:slide:N"`` or ``"D1,..:slide:N:STOP"`` moves the whole set one depth
  shallower every N iterations (shift = iteration // N, iterations 1-based, as released), until its shallowest
  depth reaches STOP (default: the depth of the node that takes the last split step, max(S)).
- ``width_prune="1:R"``: below the last split step each leaf has one chain of edges; of each chain's n edges
  (those left by depth pruning) keep the max(1, floor(n R)) with the highest advantage. Every edge of a chain
  carries the same advantage (the nodes below the last split hold their leaf's reward at every depth), so, with
  the release's stable sort, this keeps the first edges of each chain.
- ``width_prune="2:R"``: over all those edges of one tree (n of them) keep q = max(2, floor(n R)): the q // 2 with
  the highest advantage and the q - q // 2 with the lowest (ties in the order leaf, then step, as released).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

DEPTH_PRUNE_FORMS = "D1,D2,... (depths >= 1), optionally with :slide:N or :slide:N:STOP (N >= 1, STOP >= 0)"
WIDTH_PRUNE_FORMS = "1:R (per last-split branch) or 2:R (best and worst of the tree), 0 < R <= 1"
RELEASED_WIDTH_RATIO = 0.5
"""The released ``--width_pruning_ratio`` default, used for ``width_prune="1"`` or ``"2"``."""


@dataclass(frozen=True)
class DepthPrune:
    """A parsed ``depth_prune``.

    Attributes:
        depths: the pruned child depths at the start, sorted, each >= 1.
        interval: N of the sliding form (the set moves one depth shallower every N iterations), or None (fixed).
        stop: the shallowest depth the sliding set may reach, or None for the depth max(S) of the last split.
    """

    depths: tuple[int, ...]
    interval: int | None = None
    stop: int | None = None

    def active(self, iteration: int | None, split_steps: tuple[int, ...]) -> tuple[int, ...]:
        """The depths pruned at ``iteration`` (1-based; None counts as 0: the set has not moved)."""
        if self.interval is None:
            return self.depths
        stop = max(split_steps) if self.stop is None else self.stop
        shift = min((iteration or 0) // self.interval, max(0, self.depths[0] - stop))
        return tuple(depth - shift for depth in self.depths)


@dataclass(frozen=True)
class WidthPrune:
    """A parsed ``width_prune``: mode 1 (per last-split branch) or 2 (best and worst of the tree), ratio R."""

    mode: int
    ratio: float = RELEASED_WIDTH_RATIO


def _integer(text: str, low: int) -> int | None:
    """``text`` as an integer >= ``low``, else None."""
    try:
        value = int(text)
    except ValueError:
        return None
    return value if value >= low else None


def parse_depth_prune(spec: str | None) -> DepthPrune | None:
    """Parse ``depth_prune`` ("D1,D2,...", "D1,..:slide:N" or "D1,..:slide:N:STOP"); None turns it off.

    Raises:
        ValueError: one line naming the valid forms.
    """
    if spec is None:
        return None
    problem = f"unknown depth_prune {spec!r}; valid: {DEPTH_PRUNE_FORMS}"
    if not isinstance(spec, str):
        raise ValueError(problem)
    head, *tail = spec.split(":")
    depths = [_integer(part.strip(), 1) for part in head.split(",")]
    if not depths or None in depths or len(set(depths)) != len(depths):
        raise ValueError(problem)
    if not tail:
        return DepthPrune(tuple(sorted(depths)))
    numbers = [_integer(part, low) for part, low in zip(tail[1:], (1, 0), strict=False)]
    if tail[0] != "slide" or len(tail) not in (2, 3) or None in numbers:
        raise ValueError(problem)
    return DepthPrune(tuple(sorted(depths)), numbers[0], numbers[1] if len(numbers) == 2 else None)


def parse_width_prune(spec: str | None) -> WidthPrune | None:
    """Parse ``width_prune`` ("1:R" or "2:R"; "1" or "2" take the released R = 0.5); None turns it off.

    Raises:
        ValueError: one line naming the valid forms.
    """
    if spec is None:
        return None
    problem = f"unknown width_prune {spec!r}; valid: {WIDTH_PRUNE_FORMS}"
    if not isinstance(spec, str):
        raise ValueError(problem)
    mode, _, ratio = spec.partition(":")
    try:
        value = float(ratio) if ratio else RELEASED_WIDTH_RATIO
    except ValueError:
        raise ValueError(problem) from None
    if mode not in ("1", "2") or not (math.isfinite(value) and 0 < value <= 1):
        raise ValueError(problem)
    return WidthPrune(int(mode), value)


def check_pruning(depth_prune: str | None, width_prune: str | None, num_steps: int, split_steps: tuple) -> None:
    """What only a window of K steps can tell: depths in 1..K, not all of them, edges after the last split.

    Args:
        depth_prune: the option as given (None: off).
        width_prune: the option as given (None: off).
        num_steps: K, the window size.
        split_steps: the tree's split steps (window steps).

    Raises:
        ValueError: one line naming the valid range.
    """
    depth = parse_depth_prune(depth_prune)
    if depth is not None:
        if depth.depths[-1] > num_steps:
            raise ValueError(
                f"depth_prune depths must be in 1..{num_steps} (K = {num_steps}; the child of window step k sits at "
                f"depth k + 1), got {depth_prune!r}"
            )
        if len(depth.depths) >= num_steps:
            raise ValueError(f"depth_prune {depth_prune!r} prunes every one of the K = {num_steps} depths")
    if parse_width_prune(width_prune) is not None and max(split_steps) >= num_steps - 1:
        raise ValueError(
            f"width_prune prunes the edges after the last split step, and split step {max(split_steps)} is the last "
            f"of the K = {num_steps} window steps; split earlier (split_steps) or leave width_prune unset"
        )


def _inverse_order(scores: torch.Tensor) -> torch.Tensor:
    """Position of every entry of each row of ``scores`` [N, M] in that row's stable descending order."""
    order = torch.sort(scores, dim=1, descending=True, stable=True).indices  # [N, M]
    position = torch.empty_like(order)
    position.scatter_(1, order, torch.arange(scores.shape[1], device=scores.device).expand_as(order))
    return position


def width_keep(
    advantages: torch.Tensor,
    candidates: torch.Tensor,
    rank: torch.Tensor,
    group: torch.Tensor,
    width: WidthPrune,
) -> torch.Tensor:
    """The candidate edges width pruning keeps.

    Args:
        advantages: float [B, K] the edges' advantages (leaf rows, column k the edge into the node after step k).
        candidates: bool [B, K] the edges after the last split that depth pruning left.
        rank: int64 [B] each row's leaf index in its tree (0 .. L - 1).
        group: int64 [B] each row's tree index (0 .. G - 1).
        width: the parsed option.

    Returns:
        bool [B, K]: True for the kept candidates (False elsewhere).
    """
    scores = torch.where(candidates, advantages, torch.full_like(advantages, float("-inf")))  # [B, K]
    if width.mode == 1:  # one chain per row below the last split
        count = candidates.sum(1)  # [B]
        quota = torch.clamp((count.double() * width.ratio).floor(), min=1)  # [B]
        return candidates & (_inverse_order(scores) < quota.unsqueeze(1))
    trees, leaves = int(group.max()) + 1, int(rank.max()) + 1
    grid = scores.new_full((trees, leaves, scores.shape[1]), float("-inf"))
    grid[group, rank] = scores
    flat = grid.flatten(1)  # [G, L*K], leaf-major then step: the release's order among ties
    count = torch.isfinite(flat).sum(1)  # [G]
    quota = torch.minimum(torch.clamp((count.double() * width.ratio).floor(), min=2).long(), count)  # [G]
    best, worst = quota // 2, quota - quota // 2
    position = _inverse_order(flat)  # [G, L*K]; candidates come first
    chosen = (position < best.unsqueeze(1)) | (
        (position >= (count - worst).unsqueeze(1)) & (position < count.unsqueeze(1))
    )
    return candidates & chosen.view_as(grid)[group, rank]


def trained_edges(
    advantages: torch.Tensor,
    rank: torch.Tensor,
    group: torch.Tensor,
    split_steps: tuple[int, ...],
    iteration: int | None,
    depth: DepthPrune | None,
    width: WidthPrune | None,
) -> torch.Tensor:
    """The edges the update trains after depth pruning, then width pruning (the released order).

    Args:
        advantages: float [B, K] the edges' advantages (leaf rows; column k: the edge into the node after step k).
        rank: int64 [B] each row's leaf index in its tree.
        group: int64 [B] each row's tree index (0 .. G - 1).
        split_steps: the tree's split steps.
        iteration: the 1-based iteration (moves a sliding depth set; None: not moved).
        depth: the parsed ``depth_prune`` or None.
        width: the parsed ``width_prune`` or None.

    Returns:
        bool [B, K]. Depths outside 1..K prune nothing, as in the release (``creditzoo train`` refuses them).
    """
    steps = advantages.shape[1]
    keep = torch.ones(advantages.shape, dtype=torch.bool, device=advantages.device)  # [B, K]
    if depth is not None:
        keep[:, [d - 1 for d in depth.active(iteration, split_steps) if 1 <= d <= steps]] = False
    if width is not None:
        after = (torch.arange(steps, device=keep.device) > max(split_steps)).unsqueeze(0)  # [1, K] below last split
        keep &= ~after | width_keep(advantages, keep & after, rank, group, width)
    return keep


def prune_weights(
    weights: torch.Tensor,
    keep: torch.Tensor,
    group: torch.Tensor,
) -> torch.Tensor:
    """Zero the pruned edges' weights and scale each tree's others so that its total weight is unchanged.

    The released loss divides by the number of edges trained per tree, so pruning raises the weight of the edges
    that are left; scaling the kept weights by (total weight / kept weight) of their tree does the same.

    Args:
        weights: float [B, K] edge weights (1/m for an edge shared by m leaves: each edge sums to 1).
        keep: bool [B, K] the edges trained.
        group: int64 [B] each row's tree index (0 .. G - 1).

    Returns:
        float [B, K].
    """
    kept = torch.where(keep, weights, torch.zeros_like(weights))  # [B, K]
    trees = int(group.max()) + 1
    total = weights.new_zeros(trees).index_add_(0, group, weights.sum(1))  # [G]
    left = weights.new_zeros(trees).index_add_(0, group, kept.sum(1))  # [G]
    scale = torch.where(left > 0, total / left.clamp_min(torch.finfo(weights.dtype).tiny), torch.zeros_like(left))
    return kept * scale[group].unsqueeze(1)
