"""Pretraining the toy flow model with the rectified-flow loss on freshly rendered scenes.

Loss (Liu et al. 2022, "Flow Straight and Fast", arXiv 2209.03003; sigma sampling from Esser et al. 2024,
"Scaling Rectified Flow Transformers" (SD3), arXiv 2403.03206, section 3.1): with x0 a rendered image
scaled to [-1, 1], noise ~ N(0, I) and sigma ~ logit-normal(mean, std) (optionally SD3-shifted),
``x = (1 - sigma) x0 + sigma * noise`` and the loss is ``mean || v_theta(x, sigma, prompt) - (noise - x0) ||^2``.
A fraction ``prompt_dropout`` of prompts is replaced by the null prompt so classifier-free guidance works.

Everything random (initial weights, prompt choice, scene layout, noise, sigma, dropout) is drawn from
generators seeded by ``PretrainConfig.seed``, and training is bounded by a step count, never by wall
clock, so a run is reproducible (bit-exact on the same machine and thread count).
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from creditzoo.models.toy import ToyFlowModel, ToyModelConfig
from creditzoo.tasks import Task, get_task, load_object

PROMPT_SAMPLING = ("category", "uniform")


def pretrainable_tasks() -> list[str]:
    """Tasks the toy model can be pretrained on: those whose :class:`Task` names a scene renderer."""
    from creditzoo.tasks import TASKS

    return [name for name in TASKS if get_task(name).render_scenes]


def _check_pretrainable(env: str) -> None:
    if env not in pretrainable_tasks():
        raise ValueError(f"cannot pretrain on {env!r}; pretrainable tasks: {', '.join(pretrainable_tasks())}")


@dataclass(frozen=True)
class PretrainConfig:
    """Settings of one pretraining run.

    Attributes:
        env: task to pretrain on (one of :func:`pretrainable_tasks`).
        seed: seeds the initial weights and every random draw of the run.
        steps: number of optimiser steps (the run's only length limit, so it reproduces).
        batch_size: scenes per step.
        lr: peak AdamW learning rate (linear warm-up, then cosine decay to ``lr * min_lr_ratio``).
        warmup_steps: steps of linear warm-up.
        min_lr_ratio: final learning rate as a fraction of ``lr``.
        weight_decay: AdamW weight decay.
        grad_clip: maximum global gradient norm.
        prompt_dropout: probability of replacing a prompt by the null prompt (for classifier-free guidance).
        prompt_sampling: "category" draws a category uniformly, then a training prompt of it (so rare
            categories are seen as often as common ones); "uniform" draws training prompts uniformly.
        sigma_mean: mean of the logit-normal sigma distribution.
        sigma_std: std of the logit-normal sigma distribution.
        sigma_shift: SD3 time shift applied to the sampled sigma (1.0 = none).
        ema_decay: decay of the exponential moving average of the weights (the EMA is what is returned);
            0 disables it.
        log_every: record the mean loss every this many steps in the stats.
    """

    env: str = "geneval"
    seed: int = 0
    steps: int = 4000
    batch_size: int = 64
    lr: float = 1e-3
    warmup_steps: int = 200
    min_lr_ratio: float = 0.05
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    prompt_dropout: float = 0.1
    prompt_sampling: str = "category"
    sigma_mean: float = 0.0
    sigma_std: float = 1.0
    sigma_shift: float = 1.0
    ema_decay: float = 0.999
    log_every: int = 50

    def __post_init__(self) -> None:
        _check_pretrainable(self.env)
        if self.steps < 1:
            raise ValueError(f"steps must be >= 1, got {self.steps}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if self.warmup_steps < 0 or not 0 <= self.min_lr_ratio <= 1:
            raise ValueError("warmup_steps must be >= 0 and min_lr_ratio in [0, 1]")
        if not 0 <= self.prompt_dropout < 1:
            raise ValueError(f"prompt_dropout must be in [0, 1), got {self.prompt_dropout}")
        if self.prompt_sampling not in PROMPT_SAMPLING:
            raise ValueError(f"unknown prompt_sampling {self.prompt_sampling!r}; valid: {', '.join(PROMPT_SAMPLING)}")
        if not self.sigma_std > 0 or not self.sigma_shift > 0:
            raise ValueError("sigma_std and sigma_shift must be > 0")
        if not 0 <= self.ema_decay < 1:
            raise ValueError(f"ema_decay must be in [0, 1), got {self.ema_decay}")
        if self.log_every < 1 or not self.grad_clip > 0:
            raise ValueError("log_every must be >= 1 and grad_clip > 0")


@dataclass(frozen=True)
class PretrainStats:
    """What a pretraining run reports.

    Attributes:
        steps: optimiser steps taken.
        seconds: wall-clock training time.
        loss_curve: (step, mean loss over the preceding ``log_every`` steps) pairs.
        final_loss: the last entry of ``loss_curve``.
    """

    steps: int
    seconds: float
    loss_curve: list[tuple[int, float]] = field(default_factory=list)

    @property
    def final_loss(self) -> float:
        """Mean loss over the last logged window."""
        return self.loss_curve[-1][1] if self.loss_curve else float("nan")


ProgressFn = Callable[[int, int, float], None]
"""``progress(step, total_steps, loss)`` called after every optimiser step (step counts from 1)."""


def _learning_rate(config: PretrainConfig, step: int) -> float:
    if step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    span = max(config.steps - config.warmup_steps, 1)
    progress = min((step - config.warmup_steps) / span, 1.0)
    cosine = 0.5 * (1.0 + np.cos(np.pi * progress))
    return config.lr * (config.min_lr_ratio + (1.0 - config.min_lr_ratio) * cosine)


class _PromptSampler:
    """Draws training prompts (and null-prompt dropout) from a numpy generator."""

    def __init__(self, task: Task, config: PretrainConfig, rng: np.random.Generator) -> None:
        prompts = task.train_prompts()
        if not prompts:
            raise ValueError(f"task {task.name!r} has no training prompts")
        self.rng = rng
        self.config = config
        self.by_category: dict[str, list[str]] = {}
        for prompt in prompts:
            self.by_category.setdefault(task.category(prompt), []).append(prompt)
        self.categories = sorted(self.by_category)
        self.prompts = prompts

    def draw(self, batch_size: int) -> tuple[list[str], list[str]]:
        """Prompts to render and the prompts the model sees ("" where dropped), each of length B."""
        if self.config.prompt_sampling == "uniform":
            prompts = [self.prompts[i] for i in self.rng.integers(len(self.prompts), size=batch_size)]
        else:
            cats = self.rng.integers(len(self.categories), size=batch_size)
            prompts = []
            for c in cats:
                pool = self.by_category[self.categories[int(c)]]
                prompts.append(pool[int(self.rng.integers(len(pool)))])
        dropped = self.rng.random(batch_size) < self.config.prompt_dropout
        return prompts, ["" if drop else p for p, drop in zip(prompts, dropped, strict=True)]


def sample_sigmas(config: PretrainConfig, batch_size: int, generator: torch.Generator) -> torch.Tensor:
    """Training noise levels: logit-normal, then SD3-shifted; float32 [B] in (0, 1)."""
    normal = torch.randn(batch_size, generator=generator) * config.sigma_std + config.sigma_mean
    sigma = torch.sigmoid(normal)
    shift = config.sigma_shift
    return shift * sigma / (1.0 + (shift - 1.0) * sigma)


def flow_matching_loss(
    model: ToyFlowModel, images: torch.Tensor, prompts: list[str], sigma: torch.Tensor, noise: torch.Tensor
) -> torch.Tensor:
    """Rectified-flow loss: mean squared error between predicted and true velocity ``noise - x0``.

    Args:
        model: the flow model.
        images: clean images [B, 3, S, S] in [0, 1].
        prompts: B prompts ("" = unconditional).
        sigma: noise levels [B].
        noise: standard normal [B, 3, S, S].

    Returns:
        Scalar loss.
    """
    x0 = model.images_to_latents(images)  # [B, 3, S, S]
    s = sigma.view(-1, 1, 1, 1)
    noisy = (1.0 - s) * x0 + s * noise
    velocity = model.velocity(noisy, sigma, model.encode_prompts(prompts))
    return torch.mean((velocity - (noise - x0)) ** 2)


@torch.no_grad()
def _update_ema(ema: ToyFlowModel, model: ToyFlowModel, decay: float) -> None:
    for ema_param, param in zip(ema.parameters(), model.parameters(), strict=True):
        ema_param.lerp_(param, 1.0 - decay)


def default_model_config(env: str = "geneval") -> ToyModelConfig:
    """The shipped architecture for a pretrainable task (its vocabulary, default sizes)."""
    _check_pretrainable(env)
    vocabulary = load_object(get_task(env).vocabulary)
    return ToyModelConfig(vocabulary=tuple(vocabulary))  # type: ignore[arg-type]


def pretrain(
    config: PretrainConfig,
    *,
    model_config: ToyModelConfig | None = None,
    progress: ProgressFn | None = None,
) -> tuple[ToyFlowModel, PretrainStats]:
    """Train a toy flow model from scratch on scenes rendered for ``config.env``'s training prompts.

    Args:
        config: run settings; ``config.seed`` fixes everything random.
        model_config: the architecture to build (default: :func:`default_model_config`).
        progress: called after every step with (step, total, loss).

    Returns:
        The trained model (the EMA weights if ``ema_decay > 0``) in eval mode, and the run's stats.
    """
    task = get_task(config.env)
    render = load_object(task.render_scenes)
    model_config = default_model_config(config.env) if model_config is None else model_config
    return _train(task, config, model_config, render, progress)  # type: ignore[arg-type]


def _train(
    task: Task,
    config: PretrainConfig,
    model_config: ToyModelConfig,
    render: Callable[[list[str], np.random.Generator], torch.Tensor],
    progress: ProgressFn | None,
) -> tuple[ToyFlowModel, PretrainStats]:
    """The training loop: draw prompts, render, noise, rectified-flow loss, AdamW step, EMA update."""
    torch.manual_seed(config.seed)
    model = ToyFlowModel(model_config)
    ema = copy.deepcopy(model) if config.ema_decay > 0 else model
    rng = np.random.default_rng(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    sampler = _PromptSampler(task, config, rng)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    curve: list[tuple[int, float]] = []
    window: list[float] = []
    start = time.perf_counter()
    model.train()
    for step in range(config.steps):
        for group in optimizer.param_groups:
            group["lr"] = _learning_rate(config, step)
        prompts, seen = sampler.draw(config.batch_size)
        images = render(prompts, rng)  # [B, 3, S, S]
        sigma = sample_sigmas(config, config.batch_size, generator)  # [B]
        noise = torch.randn(images.shape, generator=generator)
        loss = flow_matching_loss(model, images, seen, sigma, noise)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        optimizer.step()
        if ema is not model:
            _update_ema(ema, model, min(config.ema_decay, (1.0 + step) / (10.0 + step)))
        window.append(float(loss.detach()))
        if (step + 1) % config.log_every == 0 or step + 1 == config.steps:
            curve.append((step + 1, float(np.mean(window))))
            window = []
        if progress is not None:
            progress(step + 1, config.steps, float(loss.detach()))
    stats = PretrainStats(steps=config.steps, seconds=time.perf_counter() - start, loss_curve=curve)
    return ema.eval(), stats
