"""Text-to-image denoising as a batch-native gymnasium ``VectorEnv``, with ODE branching as a capability.

One sub-environment is one trajectory. ``reset(seed=..., options={"prompts": [...]})`` draws the initial
noise x_T; each ``step(action)`` takes the next latent, chosen by the agent (an ODE or SDE step, see
:mod:`creditzoo.sampling`); the terminal reward is the score of the decoded final image.

Branching (docs/math.md sections 2 and 7): with a completion mode, every state z_k entering a window step
is completed with the ODE (current model, no gradient) and scored, giving completion rewards R_0 .. R_K.
Completions advance in lockstep with the trajectories: at grid step j, the trajectories and every live branch
go through one batched model call, so the sequential depth stays T whatever the window. A branch's first
Euler step reuses the velocity the trajectory already computed at z_k (same state, sigma, prompt, guidance
and weights, so it is the same number), which saves one model call per branch against a naive count.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import gymnasium
import numpy as np
import torch
from gymnasium.vector import AutoresetMode, VectorEnv

from creditzoo.envs.completion import CompletionMode, parse_completion_mode
from creditzoo.models.base import Conditioning, FlowModel, select_conditioning
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


@dataclass
class _Branches:
    """ODE completions in flight: M branches, each on its own sub-grid of the sigma grid."""

    latent: torch.Tensor  # [M, *S]
    trajectory: torch.Tensor  # [M] int64, index of the trajectory it belongs to
    slot: torch.Tensor  # [M] int64, k: it completes z_k
    grid: torch.Tensor  # [M, L] int64 grid indices, padded with the last index
    position: torch.Tensor  # [M] int64, index into grid of the branch's current sigma
    length: torch.Tensor  # [M] int64, number of valid grid entries

    @property
    def live(self) -> torch.Tensor:
        """Bool [M]: branches that still have steps to take."""
        return self.position < self.length - 1


@dataclass
class _Counters:
    model_evals: int = 0
    completion_evals: int = 0
    reward_calls: int = 0
    seconds: dict[str, float] = field(default_factory=lambda: {"sampling": 0.0, "completions": 0.0, "reward": 0.0})


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
        self._counters = _Counters()
        slots = self.window.size if self.completion is not None else 0
        self._completed = torch.empty((self.num_envs, slots, *self.model.sample_shape), device=self.device)
        self._branches: _Branches | None = None
        return self._observation(), {"prompts": prompts}

    def _observation(self) -> dict[str, torch.Tensor]:
        j = self.step_index
        return {
            "latent": self._latent,
            "step": torch.full((self.num_envs,), j, dtype=torch.int64, device=self.device),
            "sigma": self.sigmas[j].expand(self.num_envs).clone(),
        }

    def _evals(self, batch: int) -> int:
        return batch * (2 if self.config.guidance_scale != 1.0 else 1)

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
        start = time.perf_counter()
        branches = self._branches
        live = (
            branches.live.nonzero().squeeze(1)
            if branches is not None
            else torch.empty(0, dtype=torch.int64, device=self.device)
        )
        main = torch.arange(self.num_envs, device=self.device)
        latents, sigmas, owners = [self._latent], [self.sigmas[j].expand(self.num_envs)], [main]
        if live.numel():
            latents.append(branches.latent[live])
            sigmas.append(self.sigmas[branches.grid[live, branches.position[live]]])
            owners.append(branches.trajectory[live])
        owner = torch.cat(owners)
        velocity = self._model_velocity(torch.cat(latents), torch.cat(sigmas), owner)
        self._velocity = velocity[: self.num_envs]
        elapsed = time.perf_counter() - start
        share = live.numel() / owner.numel()
        self._counters.seconds["sampling"] += elapsed * (1 - share)
        self._counters.seconds["completions"] += elapsed * share
        self._counters.model_evals += self._evals(self.num_envs)
        self._counters.completion_evals += self._evals(live.numel())
        if live.numel():
            self._advance(live, velocity[self.num_envs :])
        self._spawn(j)
        return self._velocity

    def _advance(self, live: torch.Tensor, velocity: torch.Tensor) -> None:
        """One Euler step for branches ``live`` [N] with their velocities [N, *S]; store finished ones."""
        b = self._branches
        here, there = b.grid[live, b.position[live]], b.grid[live, b.position[live] + 1]
        b.latent[live] = ode_step(velocity, b.latent[live], self.sigmas[here], self.sigmas[there])
        b.position[live] += 1
        done = live[~b.live[live]]
        self._completed[b.trajectory[done], b.slot[done]] = b.latent[done]

    @torch.no_grad()
    def _model_velocity(self, latents: torch.Tensor, sigma: torch.Tensor, owner: torch.Tensor) -> torch.Tensor:
        """Velocity [N, *S] at ``latents`` [N, *S], ``sigma`` [N] for trajectories ``owner`` [N], in chunks."""
        size = self.config.max_batch or latents.shape[0]
        chunks = [
            self.model.velocity(
                latents[start : start + size],
                sigma[start : start + size],
                select_conditioning(self._sampling_cond, owner[start : start + size]),
                guidance_scale=self.config.guidance_scale,
            )
            for start in range(0, latents.shape[0], size)
        ]
        return torch.cat(chunks)

    def _spawn(self, j: int) -> None:
        """Start the completion of z_k = the current state, if grid step j is window step k."""
        if self.completion is None or not self.window.is_sde(j):
            return
        k = j - self.window.start
        z, v = self._latent, self._velocity
        if self.completion.kind == "x0":
            self._completed[:, k] = x0_prediction(v, z, self.sigmas[j])
            return
        grid = self.completion.sub_grid(j, self.config.num_steps).to(self.device)  # [L]
        first = ode_step(v, z, self.sigmas[j], self.sigmas[grid[1]])  # reuses the trajectory's velocity at z_k
        count = self.num_envs
        new = _Branches(
            latent=first,
            trajectory=torch.arange(count, device=self.device),
            slot=torch.full((count,), k, device=self.device),
            grid=grid.expand(count, -1),
            position=torch.ones(count, dtype=torch.int64, device=self.device),
            length=torch.full((count,), grid.numel(), device=self.device),
        )
        finished = ~new.live
        self._completed[new.trajectory[finished], k] = new.latent[finished]
        self._branches = new if self._branches is None else _concat(self._branches, new)

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
        while self._branches is not None and bool(self._branches.live.any()):
            self._drain()
        start = time.perf_counter()
        slots = self._completed.shape[1]
        latents = torch.cat([self._completed.flatten(0, 1), self._latent])  # [B*K + B, *S]
        prompts = [p for p in self._prompts for _ in range(slots)] + self._prompts
        if self.reward is None:
            images = self._decode(self._latent)
            self._counters.seconds["reward"] += time.perf_counter() - start
            return {"images": images, **self._counter_info()}
        count, first_final = latents.shape[0], latents.shape[0] - self.num_envs
        finals: list[torch.Tensor] = []

        def decode(part: slice) -> torch.Tensor:  # the calling thread: the GPU decodes chunk i+1 ...
            images = self.model.decode(latents[part])
            finals.append(images[max(0, first_final - part.start) :].cpu())  # keep the final images only
            return images

        # ... while a worker scores chunk i (one worker: noisy rewards draw in the same order as a plain loop)
        scores = score_in_chunks(
            decode, count, prompts, lambda images, names: _score(self.reward, images, names),
            chunk_size=self.config.decode_batch,
        )  # fmt: skip
        self._counters.reward_calls += sum(part.calls for part in scores)  # images x reward repeats
        self._counters.seconds["reward"] += time.perf_counter() - start
        values = {  # [B*K + B] each: the completions' images, then the final ones
            "rewards": torch.cat([part.noisy for part in scores]),
            "rewards_clean": torch.cat([part.clean for part in scores]),
        }
        if scores[0].variance is not None:  # the reward repeats its calls: keep each image's sample variance
            values["rewards_var"] = torch.cat([part.variance for part in scores])
        info = {f"final_{name}": value[-self.num_envs :] for name, value in values.items()}
        info.update(images=torch.cat(finals), **self._counter_info())
        if self.completion is not None:
            grid = (self.num_envs, slots)
            for name, value in values.items():  # R_0 .. R_{K-1} from the completions, R_K the final image's
                info[f"completion_{name}"] = torch.cat(
                    [value[: -self.num_envs].view(grid), value[-self.num_envs :, None]], 1
                )
        return info

    def _decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Images [N, 3, H, W] in [0, 1] of clean latents [N, *S], ``decode_batch`` at a time."""
        size = self.config.decode_batch or latents.shape[0]
        return torch.cat([self.model.decode(latents[i : i + size]) for i in range(0, latents.shape[0], size)])

    def _counter_info(self) -> dict:
        return {
            "model_evals": self._counters.model_evals,
            "completion_evals": self._counters.completion_evals,
            "reward_calls": self._counters.reward_calls,
            "seconds": dict(self._counters.seconds),
        }

    def _drain(self) -> None:
        """Advance live branches after the trajectories ended (only sub-grids can lag; kept for safety)."""
        b = self._branches
        live = b.live.nonzero().squeeze(1)
        sigma = self.sigmas[b.grid[live, b.position[live]]]
        v = self._model_velocity(b.latent[live], sigma, b.trajectory[live])
        self._counters.completion_evals += self._evals(live.numel())
        self._advance(live, v)

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
        if completion.kind == "x0":
            return self.model.decode(x0_prediction(self._model_velocity(x, sigma, owner), x, sigma))
        grid = completion.sub_grid(step, self.config.num_steps)
        for here, there in zip(grid[:-1].tolist(), grid[1:].tolist(), strict=True):
            sigma = self.sigmas[here].expand(x.shape[0])
            x = ode_step(self._model_velocity(x, sigma, owner), x, sigma, self.sigmas[there].expand(x.shape[0]))
        return self.model.decode(x)


def _concat(a: _Branches, b: _Branches) -> _Branches:
    width = max(a.grid.shape[1], b.grid.shape[1])

    def pad(grid: torch.Tensor) -> torch.Tensor:
        return torch.cat([grid, grid[:, -1:].expand(-1, width - grid.shape[1])], 1)

    return _Branches(
        latent=torch.cat([a.latent, b.latent]),
        trajectory=torch.cat([a.trajectory, b.trajectory]),
        slot=torch.cat([a.slot, b.slot]),
        grid=torch.cat([pad(a.grid), pad(b.grid)]),
        position=torch.cat([a.position, b.position]),
        length=torch.cat([a.length, b.length]),
    )


@dataclass(frozen=True)
class ScoredImages:
    """The scores of N images, float32 on the CPU.

    Attributes:
        noisy: [N] what the learner trains on (with reward repeats, the mean of each image's calls).
        clean: [N] the same without reward noise; equal to ``noisy`` when the reward has no noise model.
        variance: [N] the sample variance of each image's repeated noisy scores, or None without repeats.
        calls: the reward calls made: N times the repeats.
    """

    noisy: torch.Tensor
    clean: torch.Tensor
    variance: torch.Tensor | None
    calls: int


def _score(reward: object, images: torch.Tensor, prompts: list[str]) -> ScoredImages:
    """Score images with ``reward``: a plain reward callable, or one with ``score`` (:mod:`creditzoo.rewards.noise`)."""
    if hasattr(reward, "score"):
        scores = reward.score(images, prompts)
        noisy, clean, variance, repeats = scores.noisy, scores.clean, scores.variance, scores.repeats
    else:
        noisy = reward(images, prompts)  # type: ignore[operator]
        clean, variance, repeats = noisy, None, 1
    noisy, clean = noisy.float().cpu(), clean.float().cpu()
    expected = (len(prompts),)
    if tuple(noisy.shape) != expected or tuple(clean.shape) != expected:
        raise ValueError(f"reward returned shape {list(noisy.shape)}, expected {list(expected)}")
    variance = None if variance is None else variance.float().cpu()
    return ScoredImages(noisy=noisy, clean=clean, variance=variance, calls=len(prompts) * repeats)
