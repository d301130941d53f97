"""Rollout collection: run the SDE window in the environment and record what the update needs."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from creditzoo.envs import DenoisingEnv
from creditzoo.sampling import ode_step, sde_step


@dataclass(frozen=True)
class CollectedRollout:
    """One iteration's trajectories.

    Attributes:
        prompts: B prompts.
        group_ids: int64 [B].
        states: [B, K + 1, *S] window states z_0 .. z_K.
        log_probs: float32 [B, K] log-probabilities of z_{k+1} given z_k recorded while sampling.
        final_rewards: [B] (noisy) terminal rewards; ``final_rewards_clean`` [B] without noise.
        completion_rewards: [B, K + 1] or None; ``completion_rewards_clean`` likewise.
        images: [B, 3, H, W] final images.
        info: the environment's terminal info (counters, phase times).
    """

    prompts: list[str]
    group_ids: torch.Tensor
    states: torch.Tensor
    log_probs: torch.Tensor
    final_rewards: torch.Tensor
    final_rewards_clean: torch.Tensor
    completion_rewards: torch.Tensor | None
    completion_rewards_clean: torch.Tensor | None
    images: torch.Tensor
    info: dict


@torch.no_grad()
def collect_rollout(
    env: DenoisingEnv,
    prompts: list[str],
    group_ids: torch.Tensor,
    *,
    seed: int,
    sde_kind: str,
    noise_level: float,
    window_start: int | None = None,
) -> CollectedRollout:
    """Sample one episode: ODE outside the window, SDE inside it, recording z_k and log-probs.

    Args:
        env: the denoising environment (its model is the current policy).
        prompts: B prompts (groups repeated).
        group_ids: int64 [B].
        seed: seeds the initial noise and the SDE noise.
        sde_kind: "flow_grpo" or "cps".
        noise_level: SDE noise level a.
        window_start: the SDE window's first step for this episode (None: the environment's configured one).

    Returns:
        :class:`CollectedRollout`.
    """
    options: dict = {"prompts": prompts}
    if window_start is not None:
        options["window_start"] = window_start
    obs, _ = env.reset(seed=seed, options=options)
    generator = torch.Generator(device=obs["latent"].device).manual_seed(seed + 1)
    window = env.window
    states, log_probs = [], []
    info: dict = {}
    for j in range(env.config.num_steps):
        latent = obs["latent"]
        velocity = env.velocity()
        sigma, sigma_next = env.sigmas[j], env.sigmas[j + 1]
        if window.is_sde(j):
            states.append(latent)
            step = sde_step(
                velocity, latent, sigma, sigma_next, noise_level=noise_level, kind=sde_kind, generator=generator
            )
            log_probs.append(step.log_prob)
            action = step.prev_sample
        else:
            action = ode_step(velocity, latent, sigma, sigma_next)
        obs, _, _, _, info = env.step(action)
        if j + 1 == window.stop:
            states.append(obs["latent"])
    return CollectedRollout(
        prompts=list(prompts),
        group_ids=group_ids,
        states=torch.stack(states, dim=1),  # [B, K + 1, *S]
        log_probs=torch.stack(log_probs, dim=1).float(),  # [B, K]
        final_rewards=info["final_rewards"],
        final_rewards_clean=info["final_rewards_clean"],
        completion_rewards=info.get("completion_rewards"),
        completion_rewards_clean=info.get("completion_rewards_clean"),
        images=info["images"],
        info=info,
    )
