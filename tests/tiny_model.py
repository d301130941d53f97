"""A deterministic, tiny FlowModel for environment and learner tests (no task, no weights)."""

from __future__ import annotations

import hashlib

import pytest
import torch
from torch import nn

from creditzoo.models.base import FlowModel


def word_id(word: str, buckets: int = 64) -> int:
    return int(hashlib.sha1(word.encode()).hexdigest(), 16) % buckets


class TinyFlowModel(FlowModel):
    """Velocity = conv(x) modulated by sigma and a bag-of-words prompt embedding; pixel latents [3, 8, 8]."""

    sample_shape = (3, 8, 8)
    lora_target_modules = ("text", "film", "conv_in", "conv_out")

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.embed = nn.Embedding(65, 16)  # index 64 is the null prompt
        self.text = nn.Linear(16, 16)
        self.film = nn.Linear(17, 2 * 8)
        self.conv_in = nn.Conv2d(3, 8, 3, padding=1)
        self.conv_out = nn.Conv2d(8, 3, 3, padding=1)

    def encode_prompts(self, prompts: list[str]) -> dict[str, torch.Tensor]:
        tokens = torch.full((len(prompts), 6), -1, dtype=torch.int64)
        for i, prompt in enumerate(prompts):
            ids = [word_id(w) for w in prompt.split()][:6]
            tokens[i, : len(ids)] = torch.tensor(ids)
        return {"tokens": tokens.to(self.embed.weight.device)}

    def _forward(self, x: torch.Tensor, sigma: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        mask = tokens >= 0
        emb = self.embed(tokens.clamp_min(0)) * mask.unsqueeze(-1)
        text = self.text(emb.sum(1) / mask.sum(1, keepdim=True).clamp_min(1))
        scale, shift = self.film(torch.cat([text, sigma[:, None]], 1)).chunk(2, dim=1)
        h = torch.tanh(self.conv_in(x)) * (1 + scale[:, :, None, None]) + shift[:, :, None, None]
        return self.conv_out(h)

    def velocity(self, latents, sigma, cond, *, guidance_scale: float = 1.0):
        sigma = torch.as_tensor(sigma, dtype=torch.float32, device=latents.device).expand(latents.shape[0])
        tokens = cond["tokens"]
        if guidance_scale == 1.0:
            return self._forward(latents, sigma, tokens)
        null = torch.full_like(tokens, -1)
        null[:, 0] = 64
        both = self._forward(torch.cat([latents, latents]), torch.cat([sigma, sigma]), torch.cat([tokens, null]))
        v_cond, v_uncond = both.chunk(2)
        return v_uncond + guidance_scale * (v_cond - v_uncond)

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        return ((latents + 1) / 2).clamp(0, 1)


def brightness_reward(images: torch.Tensor, prompts: list[str]) -> torch.Tensor:
    """A smooth reward: mean red channel brightness."""
    return images[:, 0].mean(dim=(1, 2))


TRAIN_PROMPTS = ["a red circle", "two blue squares", "a green triangle", "three red squares"]
TEST_PROMPTS = ["a blue circle", "two green squares"]


def _score(images: torch.Tensor, prompts: list[str]) -> dict[str, torch.Tensor]:
    bright = brightness_reward(images, prompts)
    return {"strict_accuracy": (bright > 0.5).float(), "partial_score": bright}


def make_task():
    from creditzoo.tasks import Metric, Task

    return Task(
        name="tiny",
        description="tiny test task: brightness of the red channel",
        train_prompts=lambda: list(TRAIN_PROMPTS),
        test_prompts=lambda: list(TEST_PROMPTS),
        category=lambda prompt: prompt.split()[0],
        score=_score,
        metrics=(
            Metric("partial_score", "mean red-channel brightness"),
            Metric("strict_accuracy", "1 where the brightness exceeds 0.5", correctness=True),
        ),
        primary_metric="partial_score",
        rewards={"bright": "tiny_model:brightness_reward"},
        default_model="tiny_model:TinyFlowModel",
        gym_id="creditzoo/TinyTest-v0",
    )


TASK = make_task()

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.gpu)]

TRAIN_ARGS = ["--env", "tiny", "--prompts-per-iteration", "2", "--group-size", "2", "--steps", "3", "--lora-rank", "2"]
TRAIN_ARGS += ["--lr", "0.01", "--clip-range", "0.2"]
"""``creditzoo train`` options of a seconds-long run on this task (registered by the ``tiny_task`` fixture)."""
"""Device parametrization: the CPU always, CUDA where a GPU is visible (the ``gpu`` marker skips it otherwise)."""
