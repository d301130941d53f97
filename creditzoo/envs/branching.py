"""Anchor-branch and tree rollouts: rows of (input, output) transitions, sampled in lockstep.

Two rollout shapes beside the chains of :class:`~creditzoo.envs.denoising.DenoisingEnv` (docs/math.md section 9):

- **Anchor-branch** (section 7.3; TempFlow-GRPO, He et al. 2025, arXiv 2508.04324; G2RPO, Zhou et al. 2025,
  arXiv 2510.01982). Per prompt one ODE anchor o_0 = x_T, o_{j+1} = Euler step from o_j over the whole grid. At
  window step k (grid index j = w + k) the anchor's velocity gives the section-1 SDE mean m_j and std std_j, and
  each row i of the prompt's group gets one child c_{k,i} = m_j + std_j * eps_{k,i} with its log-probability.
  Every child is completed from sigma_{j+1} once per completion variant and scored: ``branch_rewards``
  [B, K, L]. A variant is the run's completion mode (``ode``, ``ode:N``, ``x0``: L = 1) or, with
  ``granularities`` (G2RPO), Euler steps over every g-th grid point from j + 1, always ending at sigma = 0.
  Row b = (prompt, i) holds K independent transitions o_j -> c_{k,i}.
- **Tree** (section 7.4; BranchGRPO, Li et al. 2025, arXiv 2509.06040). Per prompt a root x_T; every node takes
  an SDE step at every window step, with two children (independent draws of the sampler's own noise) at the
  split steps and one elsewhere; steps outside the window are ODE steps. The 2^|S| leaves of a prompt are the
  rows of its group, in the order of their branch choices read as a binary number, the first split step the
  most significant bit: node q at a split step has children 2q and 2q + 1. Row b holds the K edges on its leaf's
  path, so an edge shared by m leaves appears in m rows (the credit weights it 1/m).

Lockstep: at every grid step, everything standing on the grid (anchors and every live completion, or every tree
node) goes through one chunked model call (``DenoisingEnv._model_velocity``), so the sequential depth stays T.
A completion born at grid index j + 1 takes its first step in the next call, together with o_{j+1}.

Seeding, so that an independent one-sample-at-a-time sampler can reproduce a rollout: one CPU generator seeded
with ``seed`` draws the roots x_T [P, *S] (P groups in increasing group-id order), then, for each window step in
order, the children's noise: [B, *S] for anchor rollouts (row b's child), [P, N_k, *S] for trees (N_k nodes per
tree after window step k; with ``split_noise="paper:S"`` a split step then draws the siblings' shared xi,
[P, N_k / 2, *S]). With N processes (a ``shard``) each of these draws is made for the global batch, all
processes' groups in order, and each process keeps its block, so the draws do not depend on N.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from creditzoo.envs.denoising import DenoisingEnv, _Branches, _concat, _Counters, _score
from creditzoo.envs.shard import Shard, draw_normal
from creditzoo.sampling import ode_step, sde_step
from creditzoo.sampling.split_noise import SplitNoise, parse_split_noise

BRANCHED_SHAPES = ("anchor", "tree")


@dataclass(frozen=True)
class BranchedEpisode:
    """One anchor-branch or tree episode, as B rows of K (input, output) transitions.

    Attributes:
        shape: "anchor" or "tree".
        group_ids: int64 [B], as given.
        inputs: [B, K, *S] latent each transition starts from (anchor: o_{w+k}; tree: the parent node).
        outputs: [B, K, *S] latent it ends at (anchor: c_{k,i}; tree: the child node on the leaf's path).
        log_probs: float32 [B, K] log-probability of each output given its input, recorded while sampling.
        final_rewards: float32 [B]; tree: the leaf's reward; anchor: the reward of the prompt's anchor image
            (the ODE sample of the current policy), the same for every row of a group.
        final_rewards_clean: [B] the same without reward noise.
        branch_rewards: float32 [B, K, L] (anchor) R_{k,i} per completion variant, or None (tree).
        branch_rewards_clean: [B, K, L] without reward noise, or None.
        split_steps: the tree's split steps (window steps), or None (anchor).
        images: [B, 3, H, W] final images (tree: leaves; anchor: the group's anchor image).
        info: counters ``model_evals`` (sampling calls), ``completion_evals``, ``reward_calls`` and
            ``seconds`` per phase, as in :class:`DenoisingEnv`'s terminal info.
    """

    shape: str
    group_ids: torch.Tensor
    inputs: torch.Tensor
    outputs: torch.Tensor
    log_probs: torch.Tensor
    final_rewards: torch.Tensor
    final_rewards_clean: torch.Tensor
    branch_rewards: torch.Tensor | None
    branch_rewards_clean: torch.Tensor | None
    split_steps: tuple[int, ...] | None
    images: torch.Tensor
    info: dict


def check_granularities(granularities: tuple[int, ...] | list[int]) -> tuple[int, ...]:
    """Validate G2RPO granularities: a non-empty list of distinct integers >= 1.

    Raises:
        ValueError: one line naming the valid range.
    """
    values = tuple(granularities) if isinstance(granularities, (tuple, list)) else ()
    if not values or not all(isinstance(g, int) and not isinstance(g, bool) and g >= 1 for g in values):
        raise ValueError(f"granularities must be a non-empty list of integers >= 1, got {granularities!r}")
    if len(set(values)) != len(values):
        raise ValueError(f"granularities must be distinct, got {list(values)}")
    return values


def check_tree(split_steps: tuple[int, ...] | list[int], window_size: int, group_size: int | None = None) -> tuple:
    """Validate a split set for a window of K steps, and (if given) the group size 2^|S| it implies.

    Returns:
        The split steps, sorted, as a tuple.

    Raises:
        ValueError: one line naming the valid range (steps in 0..K-1, distinct; group size 2^|S|).
    """
    values = tuple(split_steps) if isinstance(split_steps, (tuple, list)) else ()
    if not values or not all(isinstance(s, int) and not isinstance(s, bool) and 0 <= s < window_size for s in values):
        raise ValueError(
            f"split_steps must be a non-empty list of window steps in 0..{window_size - 1}, got {split_steps!r}"
        )
    if len(set(values)) != len(values):
        raise ValueError(f"split_steps must be distinct, got {list(values)}")
    if group_size is not None and group_size != 2 ** len(values):
        raise ValueError(
            f"a tree with split steps {sorted(values)} has {2 ** len(values)} leaves per prompt: the group size must "
            f"be {2 ** len(values)} (a power of two 2^|S| with 1 <= |S| <= K={window_size}), got {group_size}"
        )
    return tuple(sorted(values))


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


class _Lockstep:
    """Model calls of one episode: main latents plus every live completion branch in one chunked call."""

    def __init__(self, env: DenoisingEnv, slots: int) -> None:
        self.env = env
        self.branches: _Branches | None = None
        self.completed = torch.empty((slots, *env.model.sample_shape), device=env.device)  # [slots, *S]
        self.counters = _Counters()

    def velocity(self, latents: torch.Tensor, j: int, owner: torch.Tensor) -> torch.Tensor:
        """Velocity [N, *S] of ``latents`` [N, *S] at grid index j; advances every live branch one Euler step."""
        env, b = self.env, self.branches
        start = time.perf_counter()
        live = b.live.nonzero().squeeze(1) if b is not None else torch.empty(0, dtype=torch.int64, device=env.device)
        count = latents.shape[0]
        parts, sigmas, owners = [latents], [env.sigmas[j].expand(count)], [owner]
        if live.numel():
            parts.append(b.latent[live])
            sigmas.append(env.sigmas[b.grid[live, b.position[live]]])
            owners.append(b.trajectory[live])
        velocity = env._model_velocity(torch.cat(parts), torch.cat(sigmas), torch.cat(owners))
        elapsed, share = time.perf_counter() - start, live.numel() / (count + live.numel())
        self.counters.seconds["sampling"] += elapsed * (1 - share)
        self.counters.seconds["completions"] += elapsed * share
        self.counters.model_evals += env._evals(count)
        self.counters.completion_evals += env._evals(live.numel())
        if live.numel():
            here, there = b.grid[live, b.position[live]], b.grid[live, b.position[live] + 1]
            b.latent[live] = ode_step(velocity[count:], b.latent[live], env.sigmas[here], env.sigmas[there])
            b.position[live] += 1
            done = live[~b.live[live]]
            self.completed[b.slot[done]] = b.latent[done]
        return velocity[:count]

    def spawn(self, latents: torch.Tensor, owner: torch.Tensor, slots: torch.Tensor, grid: list[int]) -> None:
        """Start completing ``latents`` [M, *S] (owners, output slots [M]) along grid indices ``grid``."""
        if len(grid) == 1:  # already at sigma 0
            self.completed[slots] = latents
            return
        count = latents.shape[0]
        device = self.env.device
        new = _Branches(
            latent=latents.clone(),
            trajectory=owner,
            slot=slots,
            grid=torch.tensor(grid, device=device).expand(count, -1),
            position=torch.zeros(count, dtype=torch.int64, device=device),
            length=torch.full((count,), len(grid), device=device),
        )
        self.branches = new if self.branches is None else _concat(self.branches, new)

    def finish(self) -> None:
        """Run any branch still live to sigma 0 (none should be: a branch born at j + 1 needs <= T - j - 1 calls)."""
        while self.branches is not None and bool(self.branches.live.any()):
            self.velocity(self.branches.latent[:0], 0, self.branches.trajectory[:0])

    def score(
        self, latents: torch.Tensor, prompts: list[str], keep: int
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Decode and score ``latents`` [N, *S] in chunks; returns noisy [N], clean [N] and the last ``keep`` images."""
        env = self.env
        start = time.perf_counter()
        size = env.config.decode_batch or latents.shape[0]
        noisy, clean, images = [], [], []
        for first in range(0, latents.shape[0], size):
            chunk = env._decode(latents[first : first + size])
            scores = _score(env.reward, chunk, prompts[first : first + size])
            noisy.append(scores.noisy)
            clean.append(scores.clean)
            images.append(chunk[max(0, latents.shape[0] - keep - first) :].cpu())
            self.counters.reward_calls += scores.calls  # images x reward repeats
        self.counters.seconds["reward"] += time.perf_counter() - start
        return torch.cat(noisy), torch.cat(clean), torch.cat(images)

    def info(self) -> dict:
        c = self.counters
        return {
            "model_evals": c.model_evals,
            "completion_evals": c.completion_evals,
            "reward_calls": c.reward_calls,
            "seconds": dict(c.seconds),
        }


def _groups(env: DenoisingEnv, prompts: list[str], group_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Check the batch; return each row's group index [B] and the first row of each group [P] (its prompt)."""
    if env.reward is None:
        raise ValueError("branched rollouts score their children: the environment needs a reward")
    if group_ids.ndim != 1 or group_ids.shape[0] != env.num_envs or len(prompts) != env.num_envs:
        raise ValueError(
            f"need {env.num_envs} prompts and group_ids [B={env.num_envs}], "
            f"got {len(prompts)} prompts and {list(group_ids.shape)}"
        )
    _, inverse = torch.unique(group_ids.cpu(), return_inverse=True)  # [B]
    count = int(inverse.max()) + 1
    first = torch.full((count,), env.num_envs, dtype=torch.int64).scatter_reduce_(
        0, inverse, torch.arange(env.num_envs), reduce="amin"
    )  # [P]
    if any(prompts[i] != prompts[int(first[g])] for i, g in enumerate(inverse.tolist())):
        raise ValueError("rows of one group must share a prompt")
    return inverse, first


def _reset(env: DenoisingEnv, prompts: list[str], seed: int, window_start: int | None) -> None:
    """Encode the prompts, put the sigma grid on the model's device and place this episode's window."""
    options: dict = {"prompts": prompts}
    if window_start is not None:
        options["window_start"] = window_start
    env.reset(seed=seed, options=options)


def _sde_moments(env: DenoisingEnv, velocity: torch.Tensor, latents: torch.Tensor, j: int, sde: dict):
    """Section-1 SDE mean [N, *S] and std [N, 1, ..] of a step from grid index j."""
    step = sde_step(velocity, latents, env.sigmas[j], env.sigmas[j + 1], prev_sample=latents, **sde)
    return step.mean, step.std


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
) -> BranchedEpisode:
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
        :class:`BranchedEpisode` with shape "anchor" and ``branch_rewards`` [B, K, L].
    """
    inverse, first = _groups(env, prompts, group_ids)
    variants = check_granularities(granularities) if granularities is not None else (None,)
    mode = env.config.completion or "ode"
    _reset(env, prompts, seed, window_start)
    device, shape, window, steps = env.device, tuple(env.model.sample_shape), env.window, env.config.num_steps
    batch, width, levels = env.num_envs, window.size, len(variants)
    sde = {"noise_level": noise_level, "kind": sde_kind, "cps_log_prob": cps_log_prob}
    generator = torch.Generator(device="cpu").manual_seed(int(seed))
    anchor = draw_normal(generator, (first.numel(), *shape), shard).to(device)  # [P, *S]
    owner, rows, row_group = first.to(device), torch.arange(batch, device=device), inverse.to(device)
    pool = _Lockstep(env, slots=batch * width * levels)
    inputs = torch.empty((batch, width, *shape), device=device)
    outputs = torch.empty_like(inputs)
    log_probs = torch.empty((batch, width), device=device)
    for j in range(steps):
        velocity = pool.velocity(anchor, j, owner)  # [P, *S]
        if window.is_sde(j):
            k = j - window.start
            eps = draw_normal(generator, (batch, *shape), shard).to(device)  # [B, *S]
            mean, std = _sde_moments(env, velocity, anchor, j, sde)
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
    noisy, clean, images = pool.score(latents, names, keep=first.numel())
    split = batch * width * levels
    return BranchedEpisode(
        shape="anchor",
        group_ids=group_ids,
        inputs=inputs,
        outputs=outputs,
        log_probs=log_probs.float(),
        final_rewards=noisy[split:][inverse],
        final_rewards_clean=clean[split:][inverse],
        branch_rewards=noisy[:split].view(batch, width, levels),
        branch_rewards_clean=clean[:split].view(batch, width, levels),
        split_steps=None,
        images=images[inverse],
        info=pool.info(),
    )


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
) -> BranchedEpisode:
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
        shard: this process's block of groups; see :func:`sample_anchor_branches`. None: one process.
        split_noise: the children's noise at split steps (:mod:`creditzoo.sampling.split_noise`): "iid",
            "paper:S" or "code:C"; log-probs always use the SDE's own std.

    Returns:
        :class:`BranchedEpisode` with shape "tree", ``split_steps`` and leaf rows [B, K].

    Raises:
        ValueError: a split step outside the window, or a group size other than 2^|S| (naming the valid one).
    """
    inverse, first = _groups(env, prompts, group_ids)
    sizes = torch.bincount(inverse)
    splits = check_tree(split_steps, env.window.size, int(sizes.max()))
    check_tree(splits, env.window.size, int(sizes.min()))
    sibling = parse_split_noise(split_noise)  # split-step noise (branch option split_noise)
    _reset(env, prompts, seed, window_start)
    window = env.window
    device, shape, steps = env.device, tuple(env.model.sample_shape), env.config.num_steps
    groups, batch, width = first.numel(), env.num_envs, window.size
    sde = {"noise_level": noise_level, "kind": sde_kind, "cps_log_prob": cps_log_prob}
    generator = torch.Generator(device="cpu").manual_seed(int(seed))
    nodes = draw_normal(generator, (groups, 1, *shape), shard).to(device)  # [P, N, *S]
    order = torch.sort(inverse, stable=True).indices  # rows grouped, row order kept inside a group
    rank = torch.empty_like(inverse)
    rank[order] = torch.arange(batch) - (torch.cumsum(sizes, 0) - sizes)[inverse[order]]  # leaf index in group [B]
    pool = _Lockstep(env, slots=0)
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
        mean, std = _sde_moments(env, velocity, flat, j, sde)
        children = (mean[parent] + std[parent] * eps).to(flat.dtype)  # [P*N*fan, *S]
        step = sde_step(velocity[parent], flat[parent], env.sigmas[j], env.sigmas[j + 1], prev_sample=children, **sde)
        later = sum(1 for s in splits if s > k)  # splits still to come: leaf l sits below child node l >> later
        node_in = inverse * count + (rank >> (later + fan - 1))  # [B] flat parent index of each leaf's edge
        node_out = inverse * count * fan + (rank >> later)  # [B] flat child index
        inputs[:, k] = flat[node_in.to(device)]
        outputs[:, k] = children[node_out.to(device)]
        log_probs[:, k] = step.log_prob[node_out.to(device)]
        nodes = children.view(groups, count * fan, *shape)
    noisy, clean, images = pool.score(
        nodes.flatten(0, 1), [prompts[int(i)] for i in first for _ in range(nodes.shape[1])], keep=batch
    )
    leaf = (inverse * nodes.shape[1] + rank).to(noisy.device)  # [B] flat leaf index of each row
    return BranchedEpisode(
        shape="tree",
        group_ids=group_ids,
        inputs=inputs,
        outputs=outputs,
        log_probs=log_probs.float(),
        final_rewards=noisy[leaf],
        final_rewards_clean=clean[leaf],
        branch_rewards=None,
        branch_rewards_clean=None,
        split_steps=splits,
        images=images[leaf],
        info=pool.info(),
    )
