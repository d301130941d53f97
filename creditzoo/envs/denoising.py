"""Text-to-image denoising as a batch-native gymnasium ``VectorEnv``, with ODE branching as a capability.

One sub-environment is one trajectory. ``reset(seed=..., options={"prompts": [...]})`` draws the initial
noise x_T; each ``step(action)`` takes the next latent, chosen by the agent (an ODE or SDE step, see
:mod:`creditzoo.sampling`); the terminal reward is the score of the decoded final image.

Branching (docs/math.md sections 2 and 7): with a completion mode, every state z_k entering a window step
is completed with the ODE (current model, no gradient) and scored, giving completion rewards R_0 .. R_K.
Completions advance in lockstep with the trajectories (:class:`~creditzoo.envs.lockstep.Lockstep`, the engine
the anchor and tree rollouts use too): at grid step j, the trajectories and every live branch go through one
batched model call, so the sequential depth stays T whatever the window. A branch's first Euler step reuses the
velocity the trajectory already computed at z_k (same state, sigma, prompt, guidance and weights, so it is the
same number), which saves one model call per branch against a naive count.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import gymnasium
import numpy as np
import torch
from gymnasium.vector import AutoresetMode, VectorEnv

from creditzoo.envs.completion import CompletionMode, parse_completion_mode
from creditzoo.envs.lockstep import Lockstep, score_images
from creditzoo.models.base import Conditioning, FlowModel
from creditzoo.rewards.overlap import score_in_chunks
from creditzoo.sampling import ode_step, sde_window, x0_prediction


@dataclass(frozen=True)
class DenoisingConfig:
    """Sampling grid, guidance, SDE window and completion mode of a :class:`DenoisingEnv`.

    Attributes:
        num_steps: T, denoising steps per episode.
        shift: time shift of the sigma grid (SD3.5 uses 3.0).
        guidance_scale: classifier-free guidance scale (1.0: none), the same in rollouts and completions.
        window_start: w, first SDE (trained) step.
        window_size: K, number of SDE steps (None: T - 1).
        completion: "ode", "ode:N", "x0", or None to compute only the terminal reward.
        max_batch: largest batch sent to the model in one call (lockstep batches are split into chunks of at
            most this size; None: never split). On a CPU, per-sample cost rises past a few hundred samples.
        decode_batch: largest batch of latents decoded and scored at once when an episode ends (the B x (K+1)
            completion images; at 1024 px decoding hundreds at once does not fit a GPU). None: all at once.
    """

    num_steps: int = 10
    shift: float = 1.0
    guidance_scale: float = 1.0
    window_start: int = 0
    window_size: int | None = None
    completion: str | None = "ode"
    max_batch: int | None = 128
    decode_batch: int | None = 32

    def __post_init__(self) -> None:
        for name in ("max_batch", "decode_batch"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ValueError(f"{name} must be an integer >= 1 or None, got {value!r}")
        sde_window(self.num_steps, self.window_size, self.window_start)  # raises on a bad window
        if self.completion is not None:
            parse_completion_mode(self.completion)
        if not self.guidance_scale >= 0:
            raise ValueError(f"guidance_scale must be >= 0, got {self.guidance_scale}")


class DenoisingEnv(VectorEnv):
    """B trajectories of a flow-matching text-to-image model, denoised in lockstep.

    Observations are dicts of torch tensors: ``latent`` [B, *S], ``step`` int64 [B] (grid index j) and
    ``sigma`` float32 [B]. The action is the next latent [B, *S]. Rewards are float32 [B]: zero until the
    last step, then the (possibly noisy) terminal reward. At the last step ``info`` holds
    ``completion_rewards`` [B, K+1] (if a completion mode is set) and ``final_rewards`` [B], each with a
    ``*_clean`` twin (and, when the reward repeats its calls, a ``*_var`` twin: each image's sample variance),
    the final ``images`` [B, 3, H, W], and work counters (``reward_calls`` counts every repeated call).

    Devices: latents, sigmas, steps and every index the environment builds live on the model's device (the
    sigma grid follows the model at each ``reset``); rewards, ``terminated``/``truncated`` and the completion
    rewards are small CPU tensors, as credit assignment runs on the CPU. The initial noise is drawn on the CPU
    from the seed, so an episode starts from the same x_T on every device.

    With ``reward=None`` the environment only samples: the episode ends with the final ``images`` and no rewards
    (evaluation samples this way and scores with its task's scorer).

    Agents call :meth:`velocity` for the model's velocity at the current state: that call also advances
    every live completion branch in the same batch. An agent that never calls it still gets correct
    completions (``step`` then makes the call itself).
    """

    metadata = {"autoreset_mode": AutoresetMode.DISABLED}

    def __init__(self, model: FlowModel, reward: object | None, *, num_envs: int, config: DenoisingConfig) -> None:
        """Build the environment.

        Args:
            model: the policy (a :class:`FlowModel`, possibly carrying a LoRA adapter).
            reward: a reward callable ``(images, prompts) -> Tensor[B]``; if it has a ``score`` method returning
                an object with ``noisy`` and ``clean`` (see :mod:`creditzoo.rewards.noise`), both are recorded.
                None: sample only (no rewards, no completions).
            num_envs: B, trajectories per episode.
            config: grid, guidance, window and completion mode.
        """
        if num_envs < 1:
            raise ValueError(f"num_envs must be >= 1, got {num_envs}")
        self.model = model
        self.reward = reward
        self.num_envs = int(num_envs)
        self.config = config
        self.window = sde_window(config.num_steps, config.window_size, config.window_start)
        self.completion: CompletionMode | None = (
            parse_completion_mode(config.completion) if config.completion is not None and reward is not None else None
        )
        self.sigmas = model.sigma_grid(config.num_steps, config.shift)  # [T + 1], the model's grid
        shape = tuple(model.sample_shape)
        latent_box = gymnasium.spaces.Box(-np.inf, np.inf, shape=shape, dtype=np.float32)
        self.single_action_space = latent_box
        self.action_space = gymnasium.spaces.Box(-np.inf, np.inf, shape=(self.num_envs, *shape), dtype=np.float32)
        self.single_observation_space = gymnasium.spaces.Dict(
            {
                "latent": latent_box,
                "step": gymnasium.spaces.Discrete(config.num_steps + 1),
                "sigma": gymnasium.spaces.Box(0.0, 1.0, shape=(), dtype=np.float32),
            }
        )
        self.observation_space = gymnasium.vector.utils.batch_space(self.single_observation_space, self.num_envs)
        self._step: int | None = None

    # ------------------------------------------------------------------------------------------ episode

    @property
    def device(self) -> torch.device:
        """Device of the model's parameters."""
        return next(self.model.parameters()).device  # type: ignore[attr-defined]

    @property
    def prompts(self) -> list[str]:
        """The B prompts of the current episode."""
        return self._prompts

    @property
    def cond(self) -> Conditioning:
        """Encoded prompts of the current episode (batch-first, B rows)."""
        return self._cond

    @property
    def step_index(self) -> int:
        """Grid index j of the current state (0 .. T)."""
        if self._step is None:
            raise RuntimeError("call reset() first")
        return self._step

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[dict, dict]:
        """Start B trajectories from fresh noise.

        Args:
            seed: seeds the initial noise (same seed and prompts: same episode).
            options: ``{"prompts": list of B strings}`` (required); optionally ``"noise"``: the initial
                latents x_T [B, *S] to start from instead of drawing them from ``seed``, and ``"window_start"``:
                the SDE window's first step for this episode (its size stays the configured one), e.g. from a
                sliding window schedule (docs/math.md section 9.1); without it, the configured window.

        Returns:
            (observation, info) with ``info["prompts"]``.
        """
        prompts = list((options or {}).get("prompts", []))
        if len(prompts) != self.num_envs:
            raise ValueError(
                f"reset needs options={{'prompts': [...]}} with {self.num_envs} prompts, got {len(prompts)}"
            )
        start = (options or {}).get("window_start")
        window_start = self.config.window_start if start is None else int(start)
        self.window = sde_window(self.config.num_steps, self.config.window_size, window_start)
        shape = (self.num_envs, *self.model.sample_shape)
        noise = (options or {}).get("noise")
        if noise is None:
            generator = torch.Generator(device="cpu")
            generator.manual_seed(int(seed) if seed is not None else int(torch.randint(0, 2**62, ()).item()))
            noise = torch.randn(shape, generator=generator)
        elif tuple(noise.shape) != shape:
            raise ValueError(f"options['noise'] must have shape {list(shape)}, got {list(noise.shape)}")
        self.sigmas = self.sigmas.to(self.device)  # the model may have moved since construction
        self._prompts = prompts
        with torch.no_grad():
            self._cond = self.model.encode_prompts(prompts)
            # the environment's own (no-grad) model calls reuse the text encoder's output for the whole episode
            self._sampling_cond = self.model.with_text_features(self._cond)
        self._latent = noise.to(self.device)  # [B, *S]
        self._step = 0
        self._velocity: torch.Tensor | None = None
        self._rows = torch.arange(self.num_envs, device=self.device)  # [B] each trajectory its own prompt row
        self._slots = self.window.size if self.completion is not None else 0  # completions per trajectory
        self._engine = self.new_lockstep(self.num_envs * self._slots)  # z_k of row b completes into b * K + k
        return self._observation(), {"prompts": prompts}

    def new_lockstep(self, slots: int) -> Lockstep:
        """A lockstep engine for the current episode (its prompts, sigma grid, model, reward) with ``slots`` slots.

        The environment's own chains use one per episode; the anchor and tree collectors of
        :mod:`creditzoo.shapes` build theirs here after :meth:`reset`, so every shape shares the same model calls.
        """
        return Lockstep(
            self.model,
            self._sampling_cond,
            self.sigmas,
            slots=slots,
            guidance_scale=self.config.guidance_scale,
            max_batch=self.config.max_batch,
            decode_batch=self.config.decode_batch,
            reward=self.reward,
        )

    def _observation(self) -> dict[str, torch.Tensor]:
        j = self.step_index
        return {
            "latent": self._latent,
            "step": torch.full((self.num_envs,), j, dtype=torch.int64, device=self.device),
            "sigma": self.sigmas[j].expand(self.num_envs).clone(),
        }

    @torch.no_grad()
    def velocity(self) -> torch.Tensor:
        """The model's velocity at the current state, [B, *S] (no gradient).

        The same batched call advances every live completion branch by one Euler step, and spawns the branch
        of the current state if it enters a window step.
        """
        j = self.step_index
        if j >= self.config.num_steps:
            raise RuntimeError("the episode has ended; call reset()")
        if self._velocity is not None:
            return self._velocity
        self._velocity = self._engine.velocity(self._latent, j, self._rows)  # [B, *S]; advances live branches
        self._spawn(j)
        return self._velocity

    def _spawn(self, j: int) -> None:
        """Start the completion of z_k = the current state, if grid step j is window step k."""
        if self.completion is None or not self.window.is_sde(j):
            return
        k = j - self.window.start
        z, v = self._latent, self._velocity
        slots = self._rows * self._slots + k  # [B]
        if self.completion.kind == "x0":  # x0_hat stands at sigma 0 already: stored as it is
            self._engine.spawn(x0_prediction(v, z, self.sigmas[j]), self._rows, slots, [self.config.num_steps])
            return
        grid = self.completion.sub_grid(j, self.config.num_steps).to(self.device)  # [L]
        first = ode_step(v, z, self.sigmas[j], self.sigmas[grid[1]])  # reuses the trajectory's velocity at z_k
        self._engine.spawn(first, self._rows, slots, grid, position=1)

    def step(self, action: torch.Tensor) -> tuple[dict, torch.Tensor, torch.Tensor, torch.Tensor, dict]:
        """Move every trajectory to the latent ``action`` [B, *S].

        A tensor is taken as it is (moved to the model's device); anything else (a numpy array, e.g. from
        ``action_space.sample()``) is converted to float32 first.

        Returns:
            (observation, reward [B], terminated [B], truncated [B], info); at the last step the terminal
            rewards, completion rewards, images and counters are in ``info``.
        """
        j = self.step_index
        if j >= self.config.num_steps:
            raise RuntimeError("the episode has ended; call reset()")
        if not isinstance(action, torch.Tensor):
            action = torch.as_tensor(np.asarray(action, dtype=np.float32))
        expected = (self.num_envs, *self.model.sample_shape)
        if tuple(action.shape) != expected:
            raise ValueError(f"action must be the next latent of shape {list(expected)}, got {list(action.shape)}")
        self.velocity()  # keeps branches in lockstep even if the agent did not ask
        self._latent = action.to(self.device)
        self._step = j + 1
        self._velocity = None
        zeros = torch.zeros(self.num_envs, dtype=torch.bool)
        if self._step < self.config.num_steps:
            return self._observation(), torch.zeros(self.num_envs), zeros, zeros, {}
        info = self._finish()
        rewards = info.get("final_rewards", torch.zeros(self.num_envs))  # none without a reward
        return self._observation(), rewards, ~zeros, zeros, info

    @torch.no_grad()
    def _finish(self) -> dict:
        """Decode and score the final images and the completions, ``decode_batch`` latents at a time."""
        engine = self._engine
        engine.finish()  # only sub-grids can lag behind the trajectories; kept for safety
        start = time.perf_counter()
        slots = self._slots
        latents = torch.cat([engine.completed, self._latent])  # [B*K + B, *S]
        prompts = [p for p in self._prompts for _ in range(slots)] + self._prompts
        if self.reward is None:
            images = engine.decode(self._latent)
            engine.counters.seconds["reward"] += time.perf_counter() - start
            return {"images": images, **engine.info()}
        count, first_final = latents.shape[0], latents.shape[0] - self.num_envs
        finals: list[torch.Tensor] = []

        def decode(part: slice) -> torch.Tensor:  # the calling thread: the GPU decodes chunk i+1 ...
            images = self.model.decode(latents[part])
            finals.append(images[max(0, first_final - part.start) :].cpu())  # keep the final images only
            return images

        # ... while a worker scores chunk i (one worker: noisy rewards draw in the same order as a plain loop)
        scores = score_in_chunks(
            decode, count, prompts, lambda images, names: score_images(self.reward, images, names),
            chunk_size=self.config.decode_batch,
        )  # fmt: skip
        engine.counters.reward_calls += sum(part.calls for part in scores)  # images x reward repeats
        engine.counters.seconds["reward"] += time.perf_counter() - start
        values = {  # [B*K + B] each: the completions' images, then the final ones
            "rewards": torch.cat([part.noisy for part in scores]),
            "rewards_clean": torch.cat([part.clean for part in scores]),
        }
        if scores[0].variance is not None:  # the reward repeats its calls: keep each image's sample variance
            values["rewards_var"] = torch.cat([part.variance for part in scores])
        info = {f"final_{name}": value[-self.num_envs :] for name, value in values.items()}
        info.update(images=torch.cat(finals), **engine.info())
        if self.completion is not None:
            grid = (self.num_envs, slots)
            for name, value in values.items():  # R_0 .. R_{K-1} from the completions, R_K the final image's
                info[f"completion_{name}"] = torch.cat(
                    [value[: -self.num_envs].view(grid), value[-self.num_envs :, None]], 1
                )
        return info

    # ------------------------------------------------------------------------------ standalone branching

    @torch.no_grad()
    def complete(self, latents: torch.Tensor, step: int, trajectories: torch.Tensor, mode: str = "ode") -> torch.Tensor:
        """Complete latents standing at grid index ``step`` with the ODE (or x0) and decode them.

        Args:
            latents: [N, *S] states at sigma_step.
            step: grid index j of those states (0 .. T-1).
            trajectories: int64 [N], which episode prompt each latent belongs to.
            mode: completion mode ("ode", "ode:N", "x0").

        Returns:
            Images [N, 3, H, W] in [0, 1].
        """
        completion = parse_completion_mode(mode)
        owner = trajectories.to(self.device)
        x = latents.to(self.device)
        sigma = self.sigmas[step].expand(x.shape[0])
        velocity = self._engine.model_velocity  # the episode's chunked, uncounted model call
        if completion.kind == "x0":
            return self.model.decode(x0_prediction(velocity(x, sigma, owner), x, sigma))
        grid = completion.sub_grid(step, self.config.num_steps)
        for here, there in zip(grid[:-1].tolist(), grid[1:].tolist(), strict=True):
            sigma = self.sigmas[here].expand(x.shape[0])
            x = ode_step(velocity(x, sigma, owner), x, sigma, self.sigmas[there].expand(x.shape[0]))
        return self.model.decode(x)
