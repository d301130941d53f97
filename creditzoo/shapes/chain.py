"""Chains: a row is one trajectory z_0 -> .. -> z_K, with its completion rewards R_0 .. R_K where needed.

The shape of Flow-GRPO and TP-GRPO (docs/math.md section 2): the environment's B trajectories take ODE steps
outside the SDE window and SDE steps inside it; with a completion mode, every window state z_k is completed
with the ODE and scored, R_k (R_K is the trajectory's own final reward). The trained transitions are
z_k -> z_{k+1}: ``inputs`` and ``outputs`` are views of the window states ``states`` [B, K + 1, *S].
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
    inferred_steps,
)

if TYPE_CHECKING:
    from creditzoo.envs.denoising import DenoisingEnv
    from creditzoo.envs.shard import Shard
    from creditzoo.rollout import Rollout

NAME = "chain"


@torch.no_grad()
def sample_chain(
    env: DenoisingEnv,
    prompts: list[str],
    group_ids: torch.Tensor,
    *,
    seed: int,
    sde_kind: str,
    noise_level: float,
    cps_log_prob: str = "released",
    window_start: int | None = None,
    shard: Shard | None = None,
) -> CollectedRollout:
    """Sample one chain episode: ODE outside the window, SDE inside it, recording z_k and log-probs.

    Args:
        env: the denoising environment (its model is the current policy; its completion mode gives R_0 .. R_K).
        prompts: B prompts (groups repeated).
        group_ids: int64 [B].
        seed: seeds the initial noise x_T (drawn on the CPU) and, with seed + 1, the SDE noise (on the latents'
            device).
        sde_kind: "flow_grpo" or "cps".
        noise_level: SDE noise level a.
        cps_log_prob: what a CPS step's log-prob is: "released" or "gaussian" (docs/math.md section 1).
        window_start: the SDE window's first step for this episode (None: the configured one).
        shard: this process's block of the global batch (:mod:`creditzoo.envs.shard`). None: one process.

    Returns:
        :class:`CollectedRollout` with shape "chain" and ``states`` [B, K + 1, *S].
    """
    from creditzoo.envs.shard import draw_normal

    shape = (env.num_envs, *env.model.sample_shape)
    noise = draw_normal(torch.Generator().manual_seed(seed), shape, shard)  # [B, *S] x_T, on the CPU
    reset: dict = {"prompts": prompts, "noise": noise}
    if window_start is not None:
        reset["window_start"] = window_start
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
                noise_level=noise_level,
                kind=sde_kind,
                noise=eps,
                cps_log_prob=cps_log_prob,
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
        shape=NAME,
        final_rewards_var=info.get("final_rewards_var"),
        completion_rewards_var=info.get("completion_rewards_var"),
    )


class ChainShape(RolloutShape):
    """Chains: B trajectories, K trained steps each; completion rewards [B, K + 1] or final rewards alone."""

    name = NAME
    description = "a row is one trajectory z_0 .. z_K (Flow-GRPO, TP-GRPO)"
    fields = ("completion_rewards",)
    score_name = "completion_rewards"
    scores_along_path = True

    def latents_per_row(self, window_size: int, *, completions: bool) -> int:
        """The K + 1 window states, and as many completion latents when completions are computed."""
        return (window_size + 1) * (2 if completions else 1)

    def sample(
        self, env: DenoisingEnv, prompts: list[str], group_ids: torch.Tensor, options: EpisodeOptions
    ) -> CollectedRollout:
        """:func:`sample_chain` with ``options``' seed, SDE kind and level, window start and shard."""
        return sample_chain(env, prompts, group_ids, **options.sampler_options())

    def check_rollout(self, rollout: Rollout) -> dict[str, Any]:
        """Completion rewards [B, K + 1] (K >= 1; they give K and the final rewards), or final rewards with K."""
        batch = rollout.group_ids.shape[0]
        if rollout.completion_rewards is None and rollout.final_rewards is None:
            raise ValueError("give completion_rewards [B, K+1], or final_rewards [B] with num_steps=K")
        if rollout.completion_rewards is None:
            return {"num_steps": inferred_steps(rollout, "final_rewards")}
        rewards = rollout.completion_rewards
        if not isinstance(rewards, torch.Tensor) or rewards.ndim != 2 or rewards.shape[1] < 2:
            shape = list(rewards.shape) if isinstance(rewards, torch.Tensor) else type(rewards).__name__
            raise ValueError(f"completion_rewards must have shape [B={batch}, K+1] with K >= 1, got {shape}")
        steps = rewards.shape[1] - 1
        if rollout.num_steps is not None and rollout.num_steps != steps:
            raise ValueError(f"num_steps={rollout.num_steps} but completion_rewards has K+1={steps + 1} columns")
        check_tensor("completion_rewards", rewards, (batch, steps + 1), floating=True)
        fields: dict[str, Any] = {"num_steps": steps}
        if rollout.final_rewards is None:
            fields["final_rewards"] = rewards[:, -1]
        return fields

    def rollout_fields(self, collected: CollectedRollout, *, num_steps: int) -> RolloutFields:
        """Completion rewards where they were computed, else the final rewards with K = ``num_steps``."""
        if collected.completion_rewards is not None:
            return {"group_ids": collected.group_ids, "shape": NAME, "completion_rewards": collected.completion_rewards}
        return {"group_ids": collected.group_ids, "shape": NAME, "final_rewards": collected.final_rewards,
                "num_steps": num_steps}  # fmt: skip

    def record_fields(
        self, tensors: Mapping[str, torch.Tensor], *, clean: bool = False, scores: torch.Tensor | None = None
    ) -> RolloutFields:
        """The recorded completion rewards (or ``scores``); a record without them gives final rewards and K."""
        suffix = "_clean" if clean else ""
        fields: RolloutFields = {"group_ids": tensors["group_ids"], "shape": NAME}
        if scores is not None:
            return {**fields, "completion_rewards": scores}
        if f"completion_rewards{suffix}" in tensors:
            return {**fields, "completion_rewards": tensors[f"completion_rewards{suffix}"]}
        steps = tensors["step_rewards"].shape[1]
        return {**fields, "final_rewards": tensors[f"final_rewards{suffix}"], "num_steps": steps}

    def example_fields(self, algorithm_options: Mapping[str, Any]) -> RolloutFields:
        """Two trajectories of one group, K = 1: completion rewards [[0, 1], [1, 0]]."""
        return {
            "group_ids": torch.zeros(2, dtype=torch.int64),
            "shape": NAME,
            "completion_rewards": torch.tensor([[0.0, 1.0], [1.0, 0.0]]),
        }


CHAIN = ChainShape()
