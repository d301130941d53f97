"""Anchor branches: a row b = (prompt, i) holds K independent transitions o_j -> c_{k,i} from one ODE anchor.

The shape of TempFlow-GRPO (He et al. 2025, arXiv 2508.04324) and G2RPO (Zhou et al. 2025, arXiv 2510.01982),
docs/math.md sections 7 and 9.3. Per prompt one ODE anchor o_0 = x_T, o_{j+1} = Euler step from o_j over the
whole grid. At window step k (grid index j = w + k) the anchor's velocity gives the section-1 SDE mean m_j and
std std_j, and each row i of the prompt's group gets one child c_{k,i} = m_j + std_j * eps_{k,i} with its
log-probability. Every child is completed from sigma_{j+1} once per completion variant and scored:
``branch_rewards`` [B, K, L]. A variant is the run's completion mode (``ode``, ``ode:N``, ``x0``: L = 1) or,
with ``granularities`` (G2RPO), Euler steps over every g-th grid point from j + 1, always ending at sigma = 0.
The group of (prompt, k) is the C rows of the prompt at column k.

Lockstep (:class:`~creditzoo.envs.lockstep.Lockstep`): at every grid step the anchors and every live completion
go through one chunked model call, so the sequential depth stays T. A completion born at grid index j + 1 takes
its first step in the next call, together with o_{j+1}.

Seeding, so that an independent one-sample-at-a-time sampler can reproduce a rollout: one CPU generator seeded
with ``seed`` draws the anchors x_T [P, *S] (P groups in increasing group-id order), then, for each window step in
order, the children's noise [B, *S] (row b's child). With N processes (a ``shard``) each of these draws is made
for the global batch, all processes' groups in order, and each process keeps its block, so the draws do not depend
on N.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import torch

from creditzoo.sampling import ode_step, sde_step
from creditzoo.shapes.base import (
    CollectedRollout,
    EpisodeOptions,
    RolloutFields,
    RolloutShape,
    check_tensor,
    first_rows,
    group_layout,
    reset_episode,
    sde_moments,
)

if TYPE_CHECKING:
    from creditzoo.envs.denoising import DenoisingEnv
    from creditzoo.envs.shard import Shard
    from creditzoo.rollout import Rollout

NAME = "anchor"


def check_granularities(granularities: tuple[int, ...] | list[int]) -> tuple[int, ...]:
    """Validate G2RPO granularities (completion strides): a non-empty sequence of distinct integers >= 1.

    Returns:
        The granularities as a tuple, in the given order.

    Raises:
        ValueError: one line naming the valid values.
    """
    values = tuple(granularities) if isinstance(granularities, (tuple, list)) else ()
    if not values or not all(isinstance(g, int) and not isinstance(g, bool) and g >= 1 for g in values):
        raise ValueError(f"granularities must be a non-empty list of integers >= 1, got {granularities!r}")
    if len(set(values)) != len(values):
        raise ValueError(f"granularities must be distinct, got {granularities!r}")
    return values


def completion_grid(start: int, num_steps: int, *, mode: str | None = None, granularity: int | None = None) -> list:
    """Grid indices a child standing at grid index ``start`` visits until sigma = 0 (index ``num_steps``).

    Args:
        start: grid index of the child (1 .. T).
        num_steps: T.
        mode: a completion mode ("ode", "ode:N", "x0"); x0 is one Euler step to sigma 0 (x - sigma * v).
        granularity: G2RPO stride g: one Euler step ``start`` -> ``start + 1``, then every g-th index from
            ``start + 1``, then T if the stride skipped it (docs/math.md section 9.3; released G2RPO:
            ``sigma_schedule[:eta_step + 2]`` then ``sigma_schedule[eta_step + 2::g]``).

    Returns:
        Increasing grid indices, first ``start``, last ``num_steps`` (a single index when start = T).
    """
    from creditzoo.envs.completion import parse_completion_mode

    if granularity is not None:
        if start >= num_steps:
            return [num_steps]
        points = [start, *range(start + 1, num_steps + 1, granularity)]
        return points if points[-1] == num_steps else [*points, num_steps]
    completion = parse_completion_mode(mode or "ode")
    if completion.kind == "x0":
        return [start] if start == num_steps else [start, num_steps]
    return completion.sub_grid(start, num_steps).tolist()


@torch.no_grad()
def sample_anchor_branches(
    env: DenoisingEnv,
    prompts: list[str],
    group_ids: torch.Tensor,
    *,
    seed: int,
    sde_kind: str,
    noise_level: float,
    cps_log_prob: str = "released",
    window_start: int | None = None,
    granularities: tuple[int, ...] | None = None,
    shard: Shard | None = None,
) -> CollectedRollout:
    """Sample an anchor-branch episode (docs/math.md section 9.3): C children per prompt at each window step.

    Args:
        env: the environment (its model is the policy; its config gives the grid, window and completion mode).
        prompts: B prompts, each group's rows sharing one; C = a group's size.
        group_ids: int64 [B].
        seed: seeds the anchors' x_T and the children's noise (see the module docstring for the order).
        sde_kind: "flow_grpo" or "cps".
        noise_level: SDE noise level a.
        cps_log_prob: what a CPS step's log-prob is: "released" or "gaussian" (docs/math.md section 1).
        window_start: the SDE window's first step for this episode (None: the configured one).
        granularities: G2RPO strides (one completion per stride, in this order); None: the env's completion mode.
        shard: this process's block of groups (:mod:`creditzoo.envs.shard`): every draw is made for the global
            batch and sliced, so a sample's noise does not depend on the number of processes. None: one process.

    Returns:
        :class:`CollectedRollout` with shape "anchor" and ``branch_rewards`` [B, K, L]; ``inputs`` [B, K, *S] are
        the anchor states o_{w+k}, ``outputs`` the children c_{k,i}, ``images`` the group's anchor image. With
        reward repeats, ``branch_rewards_var`` [B, K, L] and ``final_rewards_var`` [B] (the anchor image's).
    """
    from creditzoo.envs.shard import draw_normal

    inverse, first = group_layout(env, prompts, group_ids)
    variants = check_granularities(granularities) if granularities is not None else (None,)
    mode = env.config.completion or "ode"
    reset_episode(env, prompts, seed, window_start)
    device, shape, window, steps = env.device, tuple(env.model.sample_shape), env.window, env.config.num_steps
    batch, width, levels = env.num_envs, window.size, len(variants)
    sde = {"noise_level": noise_level, "kind": sde_kind, "cps_log_prob": cps_log_prob}
    generator = torch.Generator(device="cpu").manual_seed(int(seed))
    anchor = draw_normal(generator, (first.numel(), *shape), shard).to(device)  # [P, *S]
    owner, rows, row_group = first.to(device), torch.arange(batch, device=device), inverse.to(device)
    pool = env.new_lockstep(slots=batch * width * levels)
    inputs = torch.empty((batch, width, *shape), device=device)
    outputs = torch.empty_like(inputs)
    log_probs = torch.empty((batch, width), device=device)
    for j in range(steps):
        velocity = pool.velocity(anchor, j, owner)  # [P, *S]
        if window.is_sde(j):
            k = j - window.start
            eps = draw_normal(generator, (batch, *shape), shard).to(device)  # [B, *S]
            mean, std = sde_moments(env, velocity, anchor, j, sde)
            children = (mean[row_group] + std[row_group] * eps).to(anchor.dtype)  # [B, *S]
            step = sde_step(
                velocity[row_group], anchor[row_group], env.sigmas[j], env.sigmas[j + 1], prev_sample=children, **sde
            )
            inputs[:, k], outputs[:, k], log_probs[:, k] = anchor[row_group], children, step.log_prob
            for level, granularity in enumerate(variants):
                grid = completion_grid(j + 1, steps, mode=mode, granularity=granularity)
                pool.spawn(children, owner[row_group], (rows * width + k) * levels + level, grid)
        anchor = ode_step(velocity, anchor, env.sigmas[j], env.sigmas[j + 1])
    pool.finish()
    latents = torch.cat([pool.completed, anchor])  # [B*K*L + P, *S]
    names = [prompts[b] for b in range(batch) for _ in range(width * levels)] + [prompts[int(i)] for i in first]
    scores = pool.score(latents, names, keep=first.numel())
    split, variance = batch * width * levels, scores.variance  # variance: [B*K*L + P] with reward repeats, else None
    return CollectedRollout(
        prompts=list(prompts),
        shape=NAME,
        group_ids=group_ids,
        inputs=inputs,
        outputs=outputs,
        log_probs=log_probs.float(),
        final_rewards=scores.noisy[split:][inverse],
        final_rewards_clean=scores.clean[split:][inverse],
        branch_rewards=scores.noisy[:split].view(batch, width, levels),
        branch_rewards_clean=scores.clean[:split].view(batch, width, levels),
        images=scores.images[inverse],
        info=pool.info(),
        final_rewards_var=None if variance is None else variance[split:][inverse],  # [B], the anchor image's
        branch_rewards_var=None if variance is None else variance[:split].view(batch, width, levels),  # [B, K, L]
    )


class AnchorShape(RolloutShape):
    """Anchor branches: C children of a prompt's ODE anchor at every window step, each completed and scored."""

    name = NAME
    description = "a row is one child per window step of a prompt's ODE anchor (TempFlow-GRPO, G2RPO)"
    option_names = ("granularities",)
    fields = ("branch_rewards",)
    score_name = "branch_rewards"

    def episode_options(
        self, algorithm_options: Mapping[str, Any], *, window_size: int, group_size: int | None = None
    ) -> dict[str, Any]:
        """G2RPO's ``granularities`` when the algorithm has them (else the run's completion mode applies)."""
        granularities = algorithm_options.get("granularities")
        return {} if granularities is None else {"granularities": check_granularities(granularities)}

    def latents_per_row(self, window_size: int, *, completions: bool) -> int:
        """The K anchor states and K children a row trains on."""
        return 2 * window_size

    def sample(
        self, env: DenoisingEnv, prompts: list[str], group_ids: torch.Tensor, options: EpisodeOptions
    ) -> CollectedRollout:
        """:func:`sample_anchor_branches` with ``options`` (granularities: None for the env's completion mode)."""
        granularities = options.shape_options.get("granularities")
        return sample_anchor_branches(env, prompts, group_ids, granularities=granularities, **options.sampler_options())

    def scored_variances(self, collected: CollectedRollout) -> torch.Tensor | None:
        """Every child completion's variance, ``branch_rewards_var`` [B, K, L], then each group's anchor image's once.

        ``final_rewards_var`` [B] repeats the anchor image's variance on every row of its group; one row per group is
        kept, so a group of C rows counts its anchor image once, as it was scored (docs/math.md section 10.1).

        Returns:
            float [B*K*L + P] (P groups), or None without reward repeats.
        """
        if collected.branch_rewards_var is None:
            return None
        _, first = first_rows(collected.group_ids)  # [P] one row of each group
        return torch.cat([collected.branch_rewards_var.flatten(), collected.final_rewards_var[first]])

    def check_rollout(self, rollout: Rollout) -> dict[str, Any]:
        """Branch rewards [B, K, L] (they give K), finite."""
        batch = rollout.group_ids.shape[0]
        rewards = rollout.branch_rewards
        if not isinstance(rewards, torch.Tensor) or rewards.ndim != 3 or 0 in rewards.shape[1:]:
            shape = list(rewards.shape) if isinstance(rewards, torch.Tensor) else type(rewards).__name__
            raise ValueError(f"an anchor rollout needs branch_rewards of shape [B={batch}, K, L], got {shape}")
        steps = rewards.shape[1]
        if rollout.num_steps is not None and rollout.num_steps != steps:
            raise ValueError(f"num_steps={rollout.num_steps} but branch_rewards has K={steps} columns")
        check_tensor("branch_rewards", rewards, (batch, steps, rewards.shape[2]), floating=True)
        return {"num_steps": steps}

    def rollout_fields(self, collected: CollectedRollout, *, num_steps: int) -> RolloutFields:
        """Branch rewards, with the anchors' final rewards and the children's log-probs."""
        return {
            "group_ids": collected.group_ids,
            "shape": NAME,
            "branch_rewards": collected.branch_rewards,
            "final_rewards": collected.final_rewards,
            "log_probs": collected.log_probs,
        }

    def record_fields(
        self, tensors: Mapping[str, torch.Tensor], *, clean: bool = False, scores: torch.Tensor | None = None
    ) -> RolloutFields:
        """The recorded branch rewards [B, K, L] (or ``scores``)."""
        rewards = scores if scores is not None else tensors["branch_rewards_clean" if clean else "branch_rewards"]
        return {"group_ids": tensors["group_ids"], "shape": NAME, "branch_rewards": rewards}

    def example_fields(self, algorithm_options: Mapping[str, Any]) -> RolloutFields:
        """Two rows of one group, K = 2, one column per granularity when the algorithm has them (else L = 1)."""
        granularities = algorithm_options.get("granularities")
        width = len(granularities) if isinstance(granularities, (tuple, list)) and granularities else 1
        rewards = torch.arange(2 * 2 * width, dtype=torch.float32).view(2, 2, width) % 3  # [B=2, K=2, L]
        return {"group_ids": torch.zeros(2, dtype=torch.int64), "shape": NAME, "branch_rewards": rewards}


ANCHOR = AnchorShape()
