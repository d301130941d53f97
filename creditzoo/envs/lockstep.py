"""The lockstep engine: one chunked model call per grid step for everything an episode has on the sigma grid.

Whatever the rollout shape (docs/math.md sections 2, 7 and 9), an episode's model calls follow one pattern. At
grid index j the *main* latents (a chain's B trajectories, an anchor per prompt, or every node of a tree) and
every live ODE completion (a *branch*) go through one batched model call, split into chunks of at most
``max_batch`` samples, so the sequential depth stays T. A branch walks its own sub-grid of grid indices, one
Euler step per call, and its last latent (at sigma = 0) lands in a completion *slot*. :class:`Lockstep` holds
these branches and the slots, decodes and scores latents, and counts the work: ``model_evals`` (main latents),
``completion_evals`` (branches), ``reward_calls`` and the seconds of each phase.

:class:`~creditzoo.envs.denoising.DenoisingEnv` builds one engine per episode for its chains
(:meth:`~creditzoo.envs.denoising.DenoisingEnv.new_lockstep`), and the anchor and tree collectors of
:mod:`creditzoo.shapes` build theirs through the same method, so the three shapes share one implementation.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from creditzoo.models.base import Conditioning, FlowModel, select_conditioning
from creditzoo.sampling import ode_step


@dataclass
class Branches:
    """ODE completions in flight: M branches, each on its own sub-grid of the sigma grid.

    Attributes:
        latent: [M, *S] each branch's current latent.
        owner: int64 [M], the row of the episode whose prompt conditions it.
        slot: int64 [M], the completion slot its final latent is stored in.
        grid: int64 [M, L] grid indices it visits, padded with its last index.
        position: int64 [M], index into ``grid`` of its current sigma.
        length: int64 [M], its number of valid grid entries.
    """

    latent: torch.Tensor
    owner: torch.Tensor
    slot: torch.Tensor
    grid: torch.Tensor
    position: torch.Tensor
    length: torch.Tensor

    @property
    def live(self) -> torch.Tensor:
        """Bool [M]: branches that still have steps to take."""
        return self.position < self.length - 1

    def concat(self, other: Branches) -> Branches:
        """These branches followed by ``other``'s, grids padded to the wider of the two."""
        width = max(self.grid.shape[1], other.grid.shape[1])

        def pad(grid: torch.Tensor) -> torch.Tensor:
            return torch.cat([grid, grid[:, -1:].expand(-1, width - grid.shape[1])], 1)

        return Branches(
            latent=torch.cat([self.latent, other.latent]),
            owner=torch.cat([self.owner, other.owner]),
            slot=torch.cat([self.slot, other.slot]),
            grid=torch.cat([pad(self.grid), pad(other.grid)]),
            position=torch.cat([self.position, other.position]),
            length=torch.cat([self.length, other.length]),
        )


@dataclass
class Counters:
    """An episode's work: model evaluations of main latents and of branches, reward calls, seconds per phase."""

    model_evals: int = 0
    completion_evals: int = 0
    reward_calls: int = 0
    seconds: dict[str, float] = field(default_factory=lambda: {"sampling": 0.0, "completions": 0.0, "reward": 0.0})

    def info(self) -> dict:
        """The counters as an episode's terminal info reports them (a copy)."""
        return {
            "model_evals": self.model_evals,
            "completion_evals": self.completion_evals,
            "reward_calls": self.reward_calls,
            "seconds": dict(self.seconds),
        }


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


@dataclass(frozen=True)
class ScoredLatents:
    """What :meth:`Lockstep.score` returns for N latents: their scores, float32 on the CPU, and some of the images.

    Attributes:
        noisy: [N] the scores trained on (with reward repeats, the mean of each image's calls).
        clean: [N] the same without reward noise.
        variance: [N] each image's sample variance (ddof 1) over its repeated noisy scores, or None without repeats.
        images: [keep, 3, H, W] the decoded images of the last ``keep`` latents (CPU).
    """

    noisy: torch.Tensor
    clean: torch.Tensor
    variance: torch.Tensor | None
    images: torch.Tensor


def score_images(reward: object, images: torch.Tensor, prompts: list[str]) -> ScoredImages:
    """Score images [N, 3, H, W] with ``reward`` (a callable, or one with ``score``: :mod:`creditzoo.rewards.noise`).

    A plain callable ``(images, prompts) -> Tensor[N]`` gives noisy = clean and no variance; one with ``score``
    returns noisy, clean, variance and repeats.

    Raises:
        ValueError: the reward returned another shape than [N].
    """
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


class Lockstep:
    """One episode's model calls: main latents and every live completion branch in one chunked call per grid step.

    Attributes:
        completed: [slots, *S] final latents of the completions, by slot (filled as branches finish).
        counters: the episode's :class:`Counters`.
        branches: the branches spawned so far (None before the first).
    """

    def __init__(
        self,
        model: FlowModel,
        cond: Conditioning,
        sigmas: torch.Tensor,
        *,
        slots: int,
        guidance_scale: float = 1.0,
        max_batch: int | None = None,
        decode_batch: int | None = None,
        reward: object | None = None,
    ) -> None:
        """Start an episode's engine.

        Args:
            model: the policy, called without gradient.
            cond: the episode's conditioning, B rows (a latent of owner b is conditioned on row b).
            sigmas: [T + 1] the sigma grid, on the model's device.
            slots: completion slots to allocate.
            guidance_scale: classifier-free guidance scale (a scale other than 1 costs two evaluations a sample).
            max_batch: largest batch per model call (None: never split).
            decode_batch: largest batch decoded and scored at once (None: all at once).
            reward: the reward :meth:`score` calls (None: sampling only).
        """
        self.model = model
        self.cond = cond
        self.sigmas = sigmas
        self.guidance_scale = guidance_scale
        self.max_batch = max_batch
        self.decode_batch = decode_batch
        self.reward = reward
        self.device = sigmas.device
        self.branches: Branches | None = None
        self.completed = torch.empty((slots, *model.sample_shape), device=self.device)  # [slots, *S]
        self.counters = Counters()

    def evals(self, count: int) -> int:
        """Model evaluations of ``count`` samples (two each under classifier-free guidance)."""
        return count * (2 if self.guidance_scale != 1.0 else 1)

    @torch.no_grad()
    def model_velocity(self, latents: torch.Tensor, sigma: torch.Tensor, owner: torch.Tensor) -> torch.Tensor:
        """Velocity [N, *S] at ``latents`` [N, *S], ``sigma`` [N] for rows ``owner`` [N], in chunks; not counted."""
        size = self.max_batch or latents.shape[0]
        chunks = [
            self.model.velocity(
                latents[start : start + size],
                sigma[start : start + size],
                select_conditioning(self.cond, owner[start : start + size]),
                guidance_scale=self.guidance_scale,
            )
            for start in range(0, latents.shape[0], size)
        ]
        return torch.cat(chunks)

    @torch.no_grad()
    def velocity(self, latents: torch.Tensor, j: int, owner: torch.Tensor) -> torch.Tensor:
        """Velocity [N, *S] of main ``latents`` [N, *S] at grid index j; advances every live branch one Euler step.

        Args:
            latents: [N, *S] the main latents, all at sigma_j (N may be 0: the branches alone).
            j: their grid index.
            owner: int64 [N] their rows of the conditioning.
        """
        b = self.branches
        start = time.perf_counter()
        live = b.live.nonzero().squeeze(1) if b is not None else torch.empty(0, dtype=torch.int64, device=self.device)
        count = latents.shape[0]
        parts, sigmas, owners = [latents], [self.sigmas[j].expand(count)], [owner]
        if live.numel():
            parts.append(b.latent[live])
            sigmas.append(self.sigmas[b.grid[live, b.position[live]]])
            owners.append(b.owner[live])
        velocity = self.model_velocity(torch.cat(parts), torch.cat(sigmas), torch.cat(owners))
        elapsed, share = time.perf_counter() - start, live.numel() / (count + live.numel())
        self.counters.seconds["sampling"] += elapsed * (1 - share)
        self.counters.seconds["completions"] += elapsed * share
        self.counters.model_evals += self.evals(count)
        self.counters.completion_evals += self.evals(live.numel())
        if live.numel():
            here, there = b.grid[live, b.position[live]], b.grid[live, b.position[live] + 1]
            b.latent[live] = ode_step(velocity[count:], b.latent[live], self.sigmas[here], self.sigmas[there])
            b.position[live] += 1
            done = live[~b.live[live]]
            self.completed[b.slot[done]] = b.latent[done]
        return velocity[:count]

    def spawn(
        self,
        latents: torch.Tensor,
        owner: torch.Tensor,
        slots: torch.Tensor,
        grid: Sequence[int] | torch.Tensor,
        *,
        position: int = 0,
    ) -> None:
        """Start completing ``latents`` [M, *S] (rows ``owner`` [M], into ``slots`` [M]) along grid indices ``grid``.

        Args:
            latents: [M, *S] each standing at grid index ``grid[position]``.
            owner: int64 [M] their rows of the conditioning.
            slots: int64 [M] where their completions are stored.
            grid: the increasing grid indices every one of them visits, ending at T (sigma = 0).
            position: the index into ``grid`` where they stand (1 when the first Euler step was already taken).
                Latents already at the end of ``grid`` are stored as they are.
        """
        if position >= len(grid) - 1:  # already at sigma 0
            self.completed[slots] = latents
            return
        count = latents.shape[0]
        indices = torch.as_tensor(grid, device=self.device)
        new = Branches(
            latent=latents.clone(),
            owner=owner,
            slot=slots,
            grid=indices.expand(count, -1),
            position=torch.full((count,), position, dtype=torch.int64, device=self.device),
            length=torch.full((count,), len(grid), device=self.device),
        )
        self.branches = new if self.branches is None else self.branches.concat(new)

    def finish(self) -> None:
        """Run every branch still live to sigma 0 (the branches alone go through the model)."""
        while self.branches is not None and bool(self.branches.live.any()):
            self.velocity(self.branches.latent[:0], 0, self.branches.owner[:0])

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Images [N, 3, H, W] in [0, 1] of clean latents [N, *S], ``decode_batch`` at a time."""
        size = self.decode_batch or latents.shape[0]
        return torch.cat([self.model.decode(latents[i : i + size]) for i in range(0, latents.shape[0], size)])

    @torch.no_grad()
    def score(self, latents: torch.Tensor, prompts: list[str], keep: int) -> ScoredLatents:
        """Decode and score ``latents`` [N, *S] in chunks, counting the reward calls (images x reward repeats).

        Returns:
            :class:`ScoredLatents`: noisy and clean scores [N] and, with reward repeats, each image's sample
            variance [N] (None without), in the order of ``latents``; the images of the last ``keep`` latents.
        """
        start = time.perf_counter()
        size = self.decode_batch or latents.shape[0]
        noisy, clean, variance, images = [], [], [], []
        for first in range(0, latents.shape[0], size):
            chunk = self.decode(latents[first : first + size])
            scores = score_images(self.reward, chunk, prompts[first : first + size])
            noisy.append(scores.noisy)
            clean.append(scores.clean)
            variance.append(scores.variance)
            images.append(chunk[max(0, latents.shape[0] - keep - first) :].cpu())
            self.counters.reward_calls += scores.calls  # images x reward repeats
        self.counters.seconds["reward"] += time.perf_counter() - start
        repeated = variance[0] is not None  # a reward repeats every call or none
        return ScoredLatents(
            noisy=torch.cat(noisy),
            clean=torch.cat(clean),
            variance=torch.cat(variance) if repeated else None,
            images=torch.cat(images),
        )

    def info(self) -> dict:
        """The counters as an episode's terminal info reports them."""
        return self.counters.info()
