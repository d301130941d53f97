"""Trees: a row is one leaf of a prompt's binary tree of SDE paths (group = tree, 2^|S| leaves).

The shape of BranchGRPO (Li et al. 2025, arXiv 2509.06040), docs/math.md sections 7 and 9.4. Per prompt a
root x_T; every node takes an SDE step at every window step, with two children (independent draws of the
sampler's own noise) at the split steps S and one elsewhere; steps outside the window are ODE steps. The 2^|S|
leaves of a prompt are the rows of its group, in the order of their branch choices read as a binary number, the
first split step the most significant bit: node q at a split step has children 2q and 2q + 1, so leaves whose
choices agree at every split step <= k share the node after window step k. Row b holds the K edges on its
leaf's path, so an edge shared by m leaves appears in m rows (the credit weights it 1/m).

Lockstep (:class:`~creditzoo.envs.lockstep.Lockstep`): at every grid step every node of every tree goes through
one chunked model call, so the sequential depth stays T.

Seeding, so that an independent one-sample-at-a-time sampler can reproduce a rollout: one CPU generator seeded
with ``seed`` draws the roots x_T [P, *S] (P groups in increasing group-id order), then, for each window step in
order, the children's noise [P, N_k, *S] (N_k nodes per tree after window step k; with ``split_noise="paper:S"`` a
split step then draws the siblings' shared xi, [P, N_k / 2, *S]). With N processes (a ``shard``) each of these
draws is made for the global batch, all processes' groups in order, and each process keeps its block, so the draws
do not depend on N.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import torch

from creditzoo.sampling import ode_step, sde_step
from creditzoo.sampling.split_noise import SplitNoise, parse_split_noise
from creditzoo.shapes.base import (
    CollectedRollout,
    EpisodeOptions,
    RolloutFields,
    RolloutShape,
    group_layout,
    inferred_steps,
    reset_episode,
    sde_moments,
)

if TYPE_CHECKING:
    from creditzoo.envs.denoising import DenoisingEnv
    from creditzoo.envs.shard import Shard
    from creditzoo.rollout import Rollout

NAME = "tree"
MAX_DEFAULT_SPLITS = 4


def default_split_steps(num_steps: int) -> tuple[int, ...]:
    """The default split set (BranchGRPO's): the first min(4, ceil(K/2)) even window steps ({0, 2, 4, 6} for K = 9).

    Args:
        num_steps: K, the window size (>= 1).

    Returns:
        Sorted window steps, e.g. (0, 2, 4, 6) for K >= 7, (0, 2) for K = 3 or 4, (0,) for K = 1 or 2.
    """
    count = min(MAX_DEFAULT_SPLITS, (num_steps + 1) // 2)
    return tuple(range(0, 2 * count, 2))


def check_split_steps(
    split_steps: tuple[int, ...] | list[int] | None, num_steps: int, group_size: int | None = None
) -> tuple[int, ...]:
    """Resolve and validate a split set for a window of K steps (and, if given, a group size).

    Args:
        split_steps: window steps at which every node splits in two, or None for :func:`default_split_steps`.
        num_steps: K, the window size.
        group_size: if given, must equal 2^|S| (the number of leaves per tree).

    Returns:
        The sorted split steps as a tuple.

    Raises:
        ValueError: empty, not integers, outside 0..K-1, repeated, or a group size other than 2^|S| (one line
            naming the valid values).
    """
    if split_steps is None:
        split_steps = default_split_steps(num_steps)
    if not isinstance(split_steps, (tuple, list)) or not split_steps:
        raise ValueError(
            f"split_steps must be a non-empty list of window steps in 0..{num_steps - 1}, got {split_steps!r}"
        )
    if not all(isinstance(s, int) and not isinstance(s, bool) and 0 <= s < num_steps for s in split_steps):
        raise ValueError(f"split_steps must be window steps in 0..{num_steps - 1}, got {list(split_steps)}")
    steps = tuple(sorted(split_steps))
    if len(set(steps)) != len(steps):
        raise ValueError(f"split_steps must be distinct, got {list(split_steps)}")
    if group_size is not None and group_size != 2 ** len(steps):
        raise ValueError(
            f"a tree with split steps {list(steps)} has {2 ** len(steps)} leaves, so the group size must be "
            f"{2 ** len(steps)}, got {group_size} (a tree's group size is a power of two, 2^|S| for 1 <= |S| <= "
            f"{num_steps} split steps)"
        )
    return steps


@torch.no_grad()
def sample_tree(
    env: DenoisingEnv,
    prompts: list[str],
    group_ids: torch.Tensor,
    *,
    split_steps: tuple[int, ...],
    seed: int,
    sde_kind: str,
    noise_level: float,
    cps_log_prob: str = "released",
    window_start: int | None = None,
    shard: Shard | None = None,
    split_noise: str | SplitNoise = "iid",
) -> CollectedRollout:
    """Sample a tree episode (docs/math.md section 9.4): binary splits at ``split_steps``, leaves as rows.

    Args:
        env: the environment (its model is the policy; its config gives the grid and window).
        prompts: B prompts, each group's 2^|S| rows sharing one.
        group_ids: int64 [B]; a group's rows are its leaves, in row order (branch choices as a binary number,
            the first split step the most significant bit).
        split_steps: window steps at which every node splits in two.
        seed: seeds the roots x_T and every node's noise (see the module docstring for the order).
        sde_kind: "flow_grpo" or "cps".
        noise_level: SDE noise level a.
        cps_log_prob: what a CPS step's log-prob is: "released" or "gaussian" (docs/math.md section 1).
        window_start: the SDE window's first step for this episode (None: the configured one).
        shard: this process's block of groups (:mod:`creditzoo.envs.shard`). None: one process.
        split_noise: the children's noise at split steps (:mod:`creditzoo.sampling.split_noise`): "iid",
            "paper:S" or "code:C"; log-probs always use the SDE's own std.

    Returns:
        :class:`CollectedRollout` with shape "tree", ``split_steps`` and leaf rows [B, K]: ``inputs`` and
        ``outputs`` [B, K, *S] are the edges on each leaf's path; with reward repeats, ``final_rewards_var`` [B]
        (each leaf's).

    Raises:
        ValueError: a split step outside the window, or a group size other than 2^|S| (naming the valid one).
    """
    from creditzoo.envs.shard import draw_normal

    inverse, first = group_layout(env, prompts, group_ids)
    sizes = torch.bincount(inverse)
    splits = check_split_steps(split_steps, env.window.size, int(sizes.max()))
    check_split_steps(splits, env.window.size, int(sizes.min()))
    sibling = parse_split_noise(split_noise)  # split-step noise (branch option split_noise)
    reset_episode(env, prompts, seed, window_start)
    window = env.window
    device, shape, steps = env.device, tuple(env.model.sample_shape), env.config.num_steps
    groups, batch, width = first.numel(), env.num_envs, window.size
    sde = {"noise_level": noise_level, "kind": sde_kind, "cps_log_prob": cps_log_prob}
    generator = torch.Generator(device="cpu").manual_seed(int(seed))
    nodes = draw_normal(generator, (groups, 1, *shape), shard).to(device)  # [P, N, *S]
    order = torch.sort(inverse, stable=True).indices  # rows grouped, row order kept inside a group
    rank = torch.empty_like(inverse)
    rank[order] = torch.arange(batch) - (torch.cumsum(sizes, 0) - sizes)[inverse[order]]  # leaf index in group [B]
    pool = env.new_lockstep(slots=0)
    inputs = torch.empty((batch, width, *shape), device=device)
    outputs = torch.empty_like(inputs)
    log_probs = torch.empty((batch, width), device=device)
    for j in range(steps):
        count = nodes.shape[1]
        flat = nodes.flatten(0, 1)  # [P*N, *S]
        owner = first.repeat_interleave(count).to(device)  # [P*N]
        velocity = pool.velocity(flat, j, owner)
        if not window.is_sde(j):
            nodes = ode_step(velocity, flat, env.sigmas[j], env.sigmas[j + 1]).view_as(nodes)
            continue
        k = j - window.start
        fan = 2 if k in splits else 1
        parent = torch.arange(groups * count, device=device).repeat_interleave(fan)  # [P*N*fan] node q -> fan*q+c
        eps = draw_normal(generator, (groups, count * fan, *shape), shard).to(device).flatten(0, 1)
        if fan == 2:  # split step: sibling noise per split_noise; paper:S draws one shared xi per parent after eta
            shared = draw_normal(generator, (groups, count, *shape), shard) if sibling.shares_noise else None
            eps = sibling.sibling_noise(eps, None if shared is None else shared.to(device).flatten(0, 1))
        mean, std = sde_moments(env, velocity, flat, j, sde)
        children = (mean[parent] + std[parent] * eps).to(flat.dtype)  # [P*N*fan, *S]
        step = sde_step(velocity[parent], flat[parent], env.sigmas[j], env.sigmas[j + 1], prev_sample=children, **sde)
        later = sum(1 for s in splits if s > k)  # splits still to come: leaf l sits below child node l >> later
        node_in = inverse * count + (rank >> (later + fan - 1))  # [B] flat parent index of each leaf's edge
        node_out = inverse * count * fan + (rank >> later)  # [B] flat child index
        inputs[:, k] = flat[node_in.to(device)]
        outputs[:, k] = children[node_out.to(device)]
        log_probs[:, k] = step.log_prob[node_out.to(device)]
        nodes = children.view(groups, count * fan, *shape)
    scores = pool.score(
        nodes.flatten(0, 1), [prompts[int(i)] for i in first for _ in range(nodes.shape[1])], keep=batch
    )
    leaf = (inverse * nodes.shape[1] + rank).to(scores.noisy.device)  # [B] flat leaf index of each row
    return CollectedRollout(
        prompts=list(prompts),
        shape=NAME,
        group_ids=group_ids,
        inputs=inputs,
        outputs=outputs,
        log_probs=log_probs.float(),
        final_rewards=scores.noisy[leaf],
        final_rewards_clean=scores.clean[leaf],
        split_steps=splits,
        images=scores.images[leaf],
        info=pool.info(),
        final_rewards_var=None if scores.variance is None else scores.variance[leaf],  # [B] with reward repeats
    )


class TreeShape(RolloutShape):
    """Trees: 2^|S| leaves per prompt as the rows of its group, K edges on each leaf's path."""

    name = NAME
    description = "a row is one leaf of a prompt's binary tree of SDE paths (BranchGRPO)"
    option_names = ("split_steps", "split_noise")
    fields = ("split_steps",)
    score_name = "final_rewards"
    sets_group_size = True

    def episode_options(
        self, algorithm_options: Mapping[str, Any], *, window_size: int, group_size: int | None = None
    ) -> dict[str, Any]:
        """The split steps and the split-step noise, checked.

        The split steps are the algorithm's (else :func:`default_split_steps`), checked against K and G = 2^|S|; the
        noise is its ``split_noise`` (else "iid").
        """
        steps = check_split_steps(algorithm_options.get("split_steps"), window_size, group_size)
        noise = algorithm_options.get("split_noise", "iid")
        parse_split_noise(noise)  # a malformed spec fails here, with the valid forms
        return {"split_steps": steps, "split_noise": noise}

    def group_size(self, algorithm_options: Mapping[str, Any], *, window_size: int) -> int | None:
        """2^|S|, the leaves of the split set."""
        return 2 ** len(check_split_steps(algorithm_options.get("split_steps"), window_size))

    def latents_per_row(self, window_size: int, *, completions: bool) -> int:
        """The K edges' inputs and outputs a leaf trains on."""
        return 2 * window_size

    def sample(
        self, env: DenoisingEnv, prompts: list[str], group_ids: torch.Tensor, options: EpisodeOptions
    ) -> CollectedRollout:
        """:func:`sample_tree` with ``options``' split steps (required) and split noise (default "iid").

        Raises:
            ValueError: no ``split_steps`` in ``options.shape_options``.
        """
        split_steps = options.shape_options.get("split_steps")
        if split_steps is None:
            raise ValueError("a tree rollout needs split_steps (window steps at which every node splits in two)")
        split_noise = options.shape_options.get("split_noise", "iid")
        return sample_tree(
            env, prompts, group_ids, split_steps=split_steps, split_noise=split_noise, **options.sampler_options()
        )

    def check_rollout(self, rollout: Rollout) -> dict[str, Any]:
        """Leaf rewards [B], K (given or from ``log_probs``) and increasing split steps in 0..K-1 (a tuple)."""
        if rollout.final_rewards is None:
            raise ValueError("a tree rollout needs final_rewards [B], the leaf rewards")
        steps = inferred_steps(rollout, "a tree rollout")
        splits = rollout.split_steps
        if splits is None or not isinstance(splits, tuple) or not splits:
            raise ValueError(f"a tree rollout needs split_steps, a non-empty tuple of window steps, got {splits!r}")
        if check_split_steps(splits, int(steps)) != splits:
            raise ValueError(f"split_steps must be increasing, got {splits}")
        return {"num_steps": steps}

    def rollout_fields(self, collected: CollectedRollout, *, num_steps: int) -> RolloutFields:
        """Leaf rewards with the split steps and the edges' log-probs (path fusion reads them)."""
        return {
            "group_ids": collected.group_ids,
            "shape": NAME,
            "final_rewards": collected.final_rewards,
            "split_steps": collected.split_steps,
            "log_probs": collected.log_probs,
        }

    def record_fields(
        self, tensors: Mapping[str, torch.Tensor], *, clean: bool = False, scores: torch.Tensor | None = None
    ) -> RolloutFields:
        """The recorded leaf rewards (or ``scores``), split steps and log-probs."""
        rewards = scores if scores is not None else tensors["final_rewards_clean" if clean else "final_rewards"]
        return {
            "group_ids": tensors["group_ids"],
            "shape": NAME,
            "final_rewards": rewards,
            "split_steps": tuple(tensors["split_steps"].tolist()),
            "log_probs": tensors["log_probs"],
        }

    def example_fields(self, algorithm_options: Mapping[str, Any]) -> RolloutFields:
        """One tree of the algorithm's split steps (default ones of K = 9), K = max(9, last split + 1).

        Raises:
            ValueError: split steps that are not a valid set (naming the valid range).
        """
        splits = algorithm_options.get("split_steps")
        valid = isinstance(splits, (tuple, list)) and splits and all(isinstance(s, int) for s in splits)
        steps = max(9, max(splits) + 1) if valid else 9
        splits = check_split_steps(splits, steps)  # a bad split set fails here, with the valid range
        leaves = 2 ** len(splits)
        return {
            "group_ids": torch.zeros(leaves, dtype=torch.int64),
            "shape": NAME,
            "final_rewards": torch.arange(leaves, dtype=torch.float32),
            "num_steps": steps,
            "split_steps": splits,
            "log_probs": torch.zeros(leaves, steps),
        }


TREE = TreeShape()
