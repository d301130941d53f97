"""BranchGRPO: a binary tree of SDE paths per prompt, node values fused from leaves, depth-wise advantages.

Li et al. 2025, "BranchGRPO: Stable and Efficient GRPO with Structured Branching in Diffusion Models"
(arXiv 2509.06040), as specified in docs/math.md section 9.4 and checked against its released code. Every node
takes an SDE step at every window step; at the split steps S each node has two children (their noise:
``split_noise``, read by the tree sampler, :mod:`creditzoo.sampling.split_noise`). A node's value fuses the
rewards of its descendant leaves (``fusion="mean"``; ``"path"``, the paper's weights proportional to
exp(beta * the path log-probability from the node to the leaf); or ``"path_code"``, the release's nested fusion:
at each split a softmax over the two children's edge log-probs weights the children's values, from the leaves
up). Its advantage normalises over the nodes of its tree at its depth (0 where a depth has one node): by default
with the released code's sample std (ddof 1, eps 1e-8; 0 where the std is below 1e-6), or with
``depth_std="population"`` section 4's population std and eps 1e-4. As leaf rows [B = P * 2^|S|, K], column k is
the edge into the node after window step k; an edge shared by m leaves gets weight 1/m so that the loss counts it
once. ``depth_prune`` and ``width_prune`` (:mod:`creditzoo.algorithms.branch_pruning`) then zero the weights of
the edges the update skips.

Because every node at a depth has the same number of leaves below it, normalising the node values repeated
once per leaf gives exactly the node-level mean and population std, so the advantages are computed on the
leaf rows directly; the sample std of the n distinct nodes is that std times sqrt(n / (n - 1)).
"""

from __future__ import annotations

import torch

from creditzoo.algorithms._group import check_std_options, group_advantages, no_turning_points, require_shape
from creditzoo.algorithms.branch_pruning import parse_depth_prune, parse_width_prune, prune_weights, trained_edges
from creditzoo.algorithms.spec import AlgorithmSpec
from creditzoo.rollout import Credit, Rollout
from creditzoo.sampling.split_noise import parse_split_noise
from creditzoo.shapes.tree import check_split_steps

FUSIONS = ("mean", "path", "path_code")
DEPTH_STDS = ("sample", "population")
SAMPLE_EPS = 1e-8
"""The released code's eps beside the sample std."""
MIN_SAMPLE_STD = 1e-6
"""Below this sample std the released code sets a depth's advantages to 0."""


def _rank_in_group(group_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Position of each row within its group (in row order), the group index of each row and group sizes."""
    _, inverse, counts = torch.unique(group_ids, return_inverse=True, return_counts=True)
    order = torch.sort(inverse, stable=True).indices  # rows grouped, row order kept inside a group
    starts = torch.cumsum(counts, 0) - counts  # [G]
    rank_sorted = torch.arange(group_ids.numel(), device=group_ids.device) - starts.repeat_interleave(counts)
    rank = torch.empty_like(rank_sorted)
    rank[order] = rank_sorted
    return rank, inverse, counts


def _scatter_softmax(logits: torch.Tensor, index: torch.Tensor, size: int) -> torch.Tensor:
    """Softmax of ``logits`` [B] within the sets of equal ``index`` [B] (values 0..size-1)."""
    peak = logits.new_full((size,), float("-inf")).scatter_reduce_(0, index, logits, reduce="amax")
    weights = torch.exp(logits - peak[index])  # [B]
    total = logits.new_zeros(size).index_add_(0, index, weights)
    return weights / total[index]


def _sample_std_advantages(values: torch.Tensor, group_ids: torch.Tensor, nodes: torch.Tensor, eps: float):
    """Released normalisation: (v - mean) / (sample std + eps) per tree and depth.

    ``values`` [B, K] holds each node's value once per leaf below it, ``nodes`` [K] the number of distinct nodes
    per tree at each depth. Advantages are 0 where a depth has one node or its sample std is below 1e-6.
    """
    centred = group_advantages(values, group_ids, std_mode="none")  # [B, K] minus the node mean (= the leaf mean)
    _, inverse, counts = torch.unique(group_ids, return_inverse=True, return_counts=True)
    square = centred.new_zeros(counts.numel(), values.shape[1]).index_add_(0, inverse, centred**2)  # [G, K]
    population = square / counts.to(values.dtype).unsqueeze(1)  # [G, K] node-level population variance
    n = nodes.to(values.dtype).unsqueeze(0)  # [1, K]
    std = (population * n / (n - 1).clamp_min(1)).sqrt()[inverse]  # [B, K] sample std (ddof 1)
    signal = (n > 1) & (std >= MIN_SAMPLE_STD)
    return torch.where(signal, centred / (std + eps), torch.zeros_like(centred))


def _fused_values(
    rewards: torch.Tensor,
    log_probs: torch.Tensor | None,
    nodes: list[torch.Tensor],
    splits: tuple[int, ...],
    fusion: str,
    path_beta: float,
) -> torch.Tensor:
    """Node values [B, K] (column k: the node after window step k, once per leaf below it).

    Args:
        rewards: float [B] leaf rewards.
        log_probs: float [B, K] edge log-probs (needed by "path" and "path_code").
        nodes: K int64 [B] tensors, the id of each row's node after step k (unique over the batch, < 2^|S| G).
        splits: the split steps.
        fusion: "mean", "path" or "path_code".
        path_beta: beta of "path".
    """
    size, columns = nodes[0].numel() << len(splits), []
    if fusion == "path_code":  # from the leaves up: a node that splits at step k + 1 softmaxes its two child edges
        value = rewards  # [B] the node after the last window step holds its leaf's reward
        for k in reversed(range(len(nodes))):
            if k + 1 in splits:
                share = _scatter_softmax(log_probs[:, k + 1].to(rewards.dtype), nodes[k], size)  # [B]
                total = rewards.new_zeros(size).index_add_(0, nodes[k], share * value)
                value = (total / rewards.new_zeros(size).index_add_(0, nodes[k], share))[nodes[k]]
            columns.append(value)
        return torch.stack(columns[::-1], dim=1)
    for k, node in enumerate(nodes):
        if fusion == "mean":
            share = rewards.new_ones(rewards.shape)
        else:
            suffix = log_probs[:, k + 1 :].to(rewards.dtype).sum(dim=1)  # [B] path log-prob below node
            share = _scatter_softmax(path_beta * suffix, node, size)
        total = rewards.new_zeros(size).index_add_(0, node, share * rewards)
        mass = rewards.new_zeros(size).index_add_(0, node, share)
        columns.append((total / mass)[node])
    return torch.stack(columns, dim=1)


def branch_grpo(
    rollout: Rollout,
    *,
    split_steps: tuple[int, ...] | None = None,
    split_noise: str = "iid",
    fusion: str = "mean",
    path_beta: float = 1.0,
    depth_std: str = "sample",
    depth_prune: str | None = None,
    width_prune: str | None = None,
    std_mode: str = "group",
    eps: float | None = None,
) -> Credit:
    """Tree credit: node values fused from leaves, depth-wise advantages, edge weights 1/m, optional pruning.

    Args:
        rollout: a tree rollout: ``final_rewards`` [B] leaf rewards, ``split_steps``, and for ``fusion="path"`` or
            ``"path_code"`` ``log_probs`` [B, K] (the log-probability of each row's edge at window step k);
            ``iteration`` moves a sliding ``depth_prune``.
        split_steps: the split set the tree was grown with; None accepts the rollout's. When given it must equal
            the rollout's (default for K = 9: (0, 2, 4, 6); see :func:`creditzoo.shapes.tree.default_split_steps`).
        split_noise: the children's noise at split steps, "iid", "paper:S" or "code:C" (``code:C`` is
            off-policy on purpose). The tree sampler reads it; the credit does not depend on it.
        fusion: "mean" (node value = mean of its leaves), "path" (weights proportional to exp(path_beta * sum of
            log-probs on the path from the node to the leaf)) or "path_code" (the release's nested fusion: at each
            split a softmax over the two children's edge log-probs weights their values, from the leaves up).
        path_beta: the beta of path fusion (1 in the specification; "path" only).
        depth_std: with ``std_mode="group"``, the std over a tree's nodes at a depth: "sample" (ddof 1, the
            released code) or "population" (section 4).
        depth_prune: "D1,D2,..." child depths whose edges are not trained, optionally ":slide:N[:STOP]"
            (:mod:`creditzoo.algorithms.branch_pruning`); None: off.
        width_prune: "1:R" or "2:R", which edges after the last split are trained; None: off.
        std_mode: advantage normalisation ("group": per tree and depth; "global", "none": as section 4).
        eps: added to the std (None: 1e-8 with the sample std, as released; 1e-4 otherwise, as section 4).

    Returns:
        :class:`Credit` with step_rewards [B, K] (the value of the node after step k), no turning points,
        advantages [B, K] (that node's advantage) and weights [B, K] (1/m for an edge shared by m leaves; with
        pruning 0 for a pruned edge and the tree's other weights scaled so that their total is unchanged).
    """
    if depth_std not in DEPTH_STDS:
        raise ValueError(f"unknown depth_std {depth_std!r}; valid: {', '.join(DEPTH_STDS)}")
    sample = depth_std == "sample" and std_mode == "group"
    if eps is None:
        eps = SAMPLE_EPS if sample else 1e-4
    check_std_options(std_mode, eps)
    if fusion not in FUSIONS:
        raise ValueError(f"unknown fusion {fusion!r}; valid: {', '.join(FUSIONS)}")
    if not isinstance(path_beta, (int, float)) or isinstance(path_beta, bool):
        raise ValueError(f"path_beta must be a number, got {path_beta!r}")
    parse_split_noise(split_noise)
    depth_spec, width_spec = parse_depth_prune(depth_prune), parse_width_prune(width_prune)
    require_shape(rollout, "branch_grpo", BRANCH_GRPO.shape)
    K = int(rollout.num_steps)
    splits = rollout.split_steps
    if split_steps is not None and check_split_steps(split_steps, K) != splits:
        raise ValueError(f"split_steps option {list(split_steps)} differs from the rollout's {list(splits)}")
    rank, group, counts = _rank_in_group(rollout.group_ids)  # [B], [B], [G]
    depth = len(splits)
    check_split_steps(splits, K, int(counts[0]))
    if bool((counts != counts[0]).any()):
        raise ValueError(f"every tree needs {2**depth} leaves, got group sizes {sorted(set(counts.tolist()))}")
    if fusion != "mean" and rollout.log_probs is None:
        raise ValueError(f"branch_grpo with fusion={fusion!r} needs the rollout's log_probs [B, K]")
    rewards = rollout.final_rewards.to(torch.promote_types(rollout.final_rewards.dtype, torch.float32))  # [B]
    # n_k: number of splits at window steps <= k; the node after step k is fixed by the first n_k choices.
    done = [sum(s <= k for s in splits) for k in range(K)]
    nodes = [(group << depth) + (rank >> (depth - n)) for n in done]  # K x [B], unique over the batch
    values = _fused_values(rewards, rollout.log_probs, nodes, splits, fusion, path_beta)  # [B, K] node values
    if sample:
        nodes_per_depth = 2 ** torch.tensor(done, device=rank.device)  # [K]
        advantages = _sample_std_advantages(values, rollout.group_ids, nodes_per_depth, eps)  # [B, K]
    else:
        advantages = group_advantages(values, rollout.group_ids, std_mode=std_mode, eps=eps)  # [B, K]
    weights = torch.stack([rewards.new_full(rewards.shape, 2.0 ** (n - depth)) for n in done], dim=1)  # [B, K] 1/m
    if depth_spec is not None or width_spec is not None:
        keep = trained_edges(advantages, rank, group, splits, rollout.iteration, depth_spec, width_spec)  # [B, K]
        weights = prune_weights(weights, keep, group)
    return Credit(
        step_rewards=values,
        turning_points=no_turning_points(values),
        advantages=advantages,
        weights=weights,  # [B, K]
    )


BRANCH_GRPO = AlgorithmSpec(
    fn=branch_grpo,
    shape="tree",
    needs_completions=False,
    paper="arXiv 2509.06040",
    cost="0; a tree samples w + sum_k 2^|S<k| + 2^|S|(T-w-K) calls (2^|S| T as chains)",
    description=(
        "BranchGRPO: binary tree, node values fused from leaves, depth-wise advantages; options split_noise "
        "(code:C is off-policy on purpose), fusion, depth_std, depth_prune, width_prune"
    ),
)
