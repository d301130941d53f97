"""Rollout collection: sample one episode in the shape the algorithm needs and record what the update needs.

Every shape is recorded as B rows of K (input, output) transitions with the log-probability of each output
recorded while sampling, so one update trains them all (docs/math.md sections 2, 9.3, 9.4):

- "chain": inputs z_0 .. z_{K-1}, outputs z_1 .. z_K of one trajectory (views of ``states``).
- "anchor": inputs o_{w+k} (the prompt's ODE anchor), outputs c_{k,i} (row i's child at window step k).
- "tree": inputs and outputs are the edges on each leaf's path (an edge shared by m leaves is in m rows).

``COLLECTORS`` maps each shape to its collector ``(env, prompts, group_ids, EpisodeOptions)``; the learner picks
one by the algorithm's ``rollout_shape``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from creditzoo.envs import DenoisingEnv
from creditzoo.envs.branching import BranchedEpisode, sample_anchor_branches, sample_tree
from creditzoo.envs.shard import Shard, draw_normal
from creditzoo.sampling import ode_step, sde_step


@dataclass(frozen=True)
class CollectedRollout:
    """One iteration's rows of (input, output) transitions and their rewards.

    Attributes:
        prompts: B prompts.
        group_ids: int64 [B].
        inputs: [B, K, *S] latent each trained transition starts from.
        outputs: [B, K, *S] latent it ends at.
        log_probs: float32 [B, K] log-probabilities of each output given its input, recorded while sampling.
        final_rewards: [B] (noisy) terminal rewards (anchor: the group's ODE anchor image); ``*_clean`` without noise.
        completion_rewards: [B, K + 1] (chains with completions) or None; ``completion_rewards_clean`` likewise.
        images: [B, 3, H, W] final images.
        info: the environment's terminal info (counters, phase times).
        shape: "chain", "anchor" or "tree".
        states: [B, K + 1, *S] window states z_0 .. z_K (chains), else None.
        branch_rewards: [B, K, L] R_{k,i} per completion variant (anchor), else None; ``*_clean`` likewise.
        split_steps: the tree's split steps (tree), else None.
        final_rewards_var: [B] the sample variance of each final image's repeated scores (chains with reward
            repeats, docs/math.md section 10.1), else None; ``completion_rewards_var`` [B, K + 1] likewise.

    With several processes, :meth:`GRPOLearner.gather <creditzoo.learner.grpo.GRPOLearner.gather>` builds the
    global batch's view: prompts, group ids, rewards and log-probs of every process, with ``inputs``,
    ``outputs``, ``states`` and ``images`` set to None (the latents stay with the process that sampled them).
    """

    prompts: list[str]
    group_ids: torch.Tensor
    inputs: torch.Tensor
    outputs: torch.Tensor
    log_probs: torch.Tensor
    final_rewards: torch.Tensor
    final_rewards_clean: torch.Tensor
    completion_rewards: torch.Tensor | None
    completion_rewards_clean: torch.Tensor | None
    images: torch.Tensor
    info: dict
    shape: str = "chain"
    states: torch.Tensor | None = None
    branch_rewards: torch.Tensor | None = None
    branch_rewards_clean: torch.Tensor | None = None
    split_steps: tuple[int, ...] | None = None
    final_rewards_var: torch.Tensor | None = None
    completion_rewards_var: torch.Tensor | None = None


@dataclass(frozen=True)
class EpisodeOptions:
    """How one episode is sampled, whatever its shape.

    Attributes:
        seed: seeds every noise draw of the episode.
        sde_kind: "flow_grpo" or "cps".
        noise_level: SDE noise level a.
        cps_log_prob: what a CPS step's log-prob is: "released" (default) or "gaussian" (docs/math.md section 1).
        window_start: the SDE window's first step for this episode (None: the environment's configured one).
        split_steps: window steps at which every tree node splits in two (tree rollouts only, where it is required).
        split_noise: the tree children's noise at split steps, "iid", "paper:S" or "code:C" (tree rollouts only;
            docs/math.md section 9.4).
        granularities: G2RPO completion strides (anchor rollouts only; None: the environment's completion mode).
        shard: this process's block of the global batch (None: one process). Noise is drawn for the global batch
            and sliced, so a sample's noise does not depend on the number of processes.
    """

    seed: int
    sde_kind: str
    noise_level: float
    cps_log_prob: str = "released"
    window_start: int | None = None
    split_steps: tuple[int, ...] | None = None
    split_noise: str = "iid"
    granularities: tuple[int, ...] | None = None
    shard: Shard | None = None

    def sampler_options(self) -> dict:
        """The keywords every branched sampler takes: seed, SDE kind, level and log-prob, window start and shard."""
        names = ("seed", "sde_kind", "noise_level", "cps_log_prob", "window_start", "shard")
        return {name: getattr(self, name) for name in names}

    def check_shape(self, shape: str) -> None:
        """Raise ValueError when an option belongs to another rollout shape than ``shape``."""
        if shape != "tree" and self.split_steps is not None:
            raise ValueError(f"split_steps belong to tree rollouts, not to {shape} rollouts")
        if shape == "tree" and self.split_steps is None:
            raise ValueError("a tree rollout needs split_steps")
        if shape != "tree" and self.split_noise != "iid":
            raise ValueError(f"split_noise belongs to tree rollouts, not to {shape} rollouts")
        if shape != "anchor" and self.granularities is not None:
            raise ValueError(f"granularities belong to anchor rollouts, not to {shape} rollouts")


@torch.no_grad()
def collect_chain(
    env: DenoisingEnv,
    prompts: list[str],
    group_ids: torch.Tensor,
    options: EpisodeOptions,
) -> CollectedRollout:
    """Sample one chain episode: ODE outside the window, SDE inside it, recording z_k and log-probs.

    Args:
        env: the denoising environment (its model is the current policy).
        prompts: B prompts (groups repeated).
        group_ids: int64 [B].
        options: the seed (initial noise and SDE noise), SDE kind and level, window start and shard; no split
            steps or granularities.

    Returns:
        :class:`CollectedRollout` with shape "chain".
    """
    options.check_shape("chain")
    seed, shard = options.seed, options.shard
    shape = (env.num_envs, *env.model.sample_shape)
    noise = draw_normal(torch.Generator().manual_seed(seed), shape, shard)  # [B, *S] x_T, on the CPU
    reset: dict = {"prompts": prompts, "noise": noise}
    if options.window_start is not None:
        reset["window_start"] = options.window_start
    obs, _ = env.reset(seed=seed, options=reset)
    generator = torch.Generator(device=obs["latent"].device).manual_seed(seed + 1)
    noise_dtype = torch.promote_types(obs["latent"].dtype, torch.float32)  # sde_step's own draw dtype
    window = env.window
    states, log_probs = [], []
    info: dict = {}
    for j in range(env.config.num_steps):
        latent = obs["latent"]
        velocity = env.velocity()
        sigma, sigma_next = env.sigmas[j], env.sigmas[j + 1]
        if window.is_sde(j):
            states.append(latent)
            eps = draw_normal(generator, latent.shape, shard, dtype=noise_dtype)  # [B, *S]
            step = sde_step(
                velocity,
                latent,
                sigma,
                sigma_next,
                noise_level=options.noise_level,
                kind=options.sde_kind,
                noise=eps,
                cps_log_prob=options.cps_log_prob,
            )
            log_probs.append(step.log_prob)
            action = step.prev_sample
        else:
            action = ode_step(velocity, latent, sigma, sigma_next)
        obs, _, _, _, info = env.step(action)
        if j + 1 == window.stop:
            states.append(obs["latent"])
    stacked = torch.stack(states, dim=1)  # [B, K + 1, *S]
    return CollectedRollout(
        prompts=list(prompts),
        group_ids=group_ids,
        inputs=stacked[:, :-1],  # [B, K, *S] views, no copy
        outputs=stacked[:, 1:],
        states=stacked,
        log_probs=torch.stack(log_probs, dim=1).float(),  # [B, K]
        final_rewards=info["final_rewards"],
        final_rewards_clean=info["final_rewards_clean"],
        completion_rewards=info.get("completion_rewards"),
        completion_rewards_clean=info.get("completion_rewards_clean"),
        images=info["images"],
        info=info,
        final_rewards_var=info.get("final_rewards_var"),
        completion_rewards_var=info.get("completion_rewards_var"),
    )


def _from_episode(episode: BranchedEpisode, prompts: list[str]) -> CollectedRollout:
    return CollectedRollout(
        prompts=list(prompts),
        group_ids=episode.group_ids,
        inputs=episode.inputs,
        outputs=episode.outputs,
        log_probs=episode.log_probs,
        final_rewards=episode.final_rewards,
        final_rewards_clean=episode.final_rewards_clean,
        completion_rewards=None,
        completion_rewards_clean=None,
        images=episode.images,
        info=episode.info,
        shape=episode.shape,
        branch_rewards=episode.branch_rewards,
        branch_rewards_clean=episode.branch_rewards_clean,
        split_steps=episode.split_steps,
    )


def collect_anchor(
    env: DenoisingEnv,
    prompts: list[str],
    group_ids: torch.Tensor,
    options: EpisodeOptions,
) -> CollectedRollout:
    """Sample one anchor-branch episode (:func:`creditzoo.envs.branching.sample_anchor_branches`).

    Args:
        env: the denoising environment (its model is the current policy).
        prompts: B prompts (groups repeated; C = the group size).
        group_ids: int64 [B].
        options: the seed (anchors and children's noise), SDE kind and level, window start, G2RPO granularities
            (None: the environment's completion mode) and shard (a block of whole groups); no split steps.

    Returns:
        :class:`CollectedRollout` with shape "anchor" and ``branch_rewards`` [B, K, L].
    """
    options.check_shape("anchor")
    episode = sample_anchor_branches(
        env, prompts, group_ids, granularities=options.granularities, **options.sampler_options()
    )
    return _from_episode(episode, prompts)


def collect_tree(
    env: DenoisingEnv,
    prompts: list[str],
    group_ids: torch.Tensor,
    options: EpisodeOptions,
) -> CollectedRollout:
    """Sample one tree episode (:func:`creditzoo.envs.branching.sample_tree`); leaves are the rows.

    Args:
        env: the denoising environment (its model is the current policy).
        prompts: B prompts (each group's 2^|S| leaves share one).
        group_ids: int64 [B].
        options: the seed (roots and every node's noise), SDE kind and level, window start, the split steps
            (required), the split noise and shard (a block of whole groups); no granularities.

    Returns:
        :class:`CollectedRollout` with shape "tree" and ``split_steps``.
    """
    options.check_shape("tree")
    assert options.split_steps is not None  # checked above; for the type checker
    episode = sample_tree(
        env,
        prompts,
        group_ids,
        split_steps=options.split_steps,
        split_noise=options.split_noise,
        **options.sampler_options(),
    )
    return _from_episode(episode, prompts)


Collector = Callable[[DenoisingEnv, list[str], torch.Tensor, EpisodeOptions], CollectedRollout]

COLLECTORS: dict[str, Collector] = {
    "chain": collect_chain,
    "anchor": collect_anchor,
    "tree": collect_tree,
}


TRAINABLE_SHAPES = tuple(COLLECTORS)
"""Rollout shapes the learner can collect and train: those with a collector."""


def check_trainable(name: str, shape: str) -> None:
    """Fail in one line when the learner cannot yet collect the rollout shape an algorithm needs."""
    if shape not in TRAINABLE_SHAPES:
        raise ValueError(
            f"algorithm {name!r} needs {shape} rollouts, which this learner cannot collect yet; "
            f"trainable shapes: {', '.join(TRAINABLE_SHAPES)}"
        )


def collect_rollout(
    env: DenoisingEnv,
    prompts: list[str],
    group_ids: torch.Tensor,
    options: EpisodeOptions,
    shape: str = "chain",
) -> CollectedRollout:
    """Sample one episode of rollout shape ``shape`` with its collector from ``COLLECTORS``.

    Args:
        env: the denoising environment (its model is the current policy).
        prompts: B prompts (groups repeated).
        group_ids: int64 [B].
        options: how to sample it (:class:`EpisodeOptions`).
        shape: "chain", "anchor" or "tree".

    Returns:
        :class:`CollectedRollout`.

    Raises:
        ValueError: unknown shape (listing the valid ones), or options that do not fit the shape.
    """
    if shape not in COLLECTORS:
        raise ValueError(f"unknown rollout shape {shape!r}; valid: {', '.join(COLLECTORS)}")
    return COLLECTORS[shape](env, prompts, group_ids, options)
