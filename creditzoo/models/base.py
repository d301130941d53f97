"""The small interface every backend implements: encode prompts, predict velocity, decode to images.

Convention (rectified flow, as in SD3 and Flow-GRPO): ``x_sigma = (1 - sigma) * x0 + sigma * noise`` and the
model predicts the velocity ``v = noise - x0``, so an Euler step ``x + (sigma' - sigma) * v`` moves towards
the image and ``x0_hat = x - sigma * v``.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch

Conditioning = dict[str, torch.Tensor]
"""Encoded prompts: a dict of tensors, every one batch-first ([B, ...]), opaque to everything but its model."""


def select_conditioning(cond: Conditioning, index: torch.Tensor) -> Conditioning:
    """Gather rows of every tensor in ``cond``.

    Args:
        cond: Conditioning whose tensors all have batch size B.
        index: int64 [N] indices into the batch (repeats allowed).

    Returns:
        Conditioning with batch size N.
    """
    return {key: value.index_select(0, index.to(value.device)) for key, value in cond.items()}


@runtime_checkable
class FlowModel(Protocol):
    """What the environment and learner need of a text-to-image flow model.

    Implementations are ``torch.nn.Module`` subclasses so that peft can put LoRA adapters on them.
    """

    sample_shape: tuple[int, ...]
    """Shape of one latent, without the batch dimension (e.g. (3, 32, 32) for the toy pixel model)."""

    def encode_prompts(self, prompts: list[str]) -> Conditioning:
        """Encode B prompts into batch-first conditioning tensors."""
        ...

    def velocity(
        self,
        latents: torch.Tensor,
        sigma: torch.Tensor,
        cond: Conditioning,
        *,
        guidance_scale: float = 1.0,
    ) -> torch.Tensor:
        """Predict the velocity at ``latents`` [B, *sample_shape] and noise levels ``sigma`` [B].

        With ``guidance_scale > 1`` the model applies classifier-free guidance itself:
        ``v = v_uncond + guidance_scale * (v_cond - v_uncond)``.
        """
        ...

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Map clean latents [B, *sample_shape] to float images [B, 3, H, W] in [0, 1]."""
        ...
