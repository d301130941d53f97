"""The small interface every backend implements: encode prompts, predict velocity, decode to images.

Convention (rectified flow, as in SD3 and Flow-GRPO): ``x_sigma = (1 - sigma) * x0 + sigma * noise`` and the
model predicts the velocity ``v = noise - x0``, so an Euler step ``x + (sigma' - sigma) * v`` moves towards
the image and ``x0_hat = x - sigma * v``.
"""

from __future__ import annotations

from pathlib import Path

import torch

from creditzoo.sampling.schedule import flow_sigmas

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


class FlowModel(torch.nn.Module):
    """What the environment and learner need of a text-to-image flow model, and what a model may offer beyond it.

    Every backend subclasses this (a ``torch.nn.Module``, so that peft can put LoRA adapters on it) and implements
    :meth:`encode_prompts`, :meth:`velocity` and :meth:`decode` and sets ``sample_shape``. The optional abilities
    are declared here with their defaults, so the learner, the environment and the checkpoints read them as plain
    attributes and methods; a backend overrides the ones it has (SD3 and FLUX: LoRA defaults, gradient
    checkpointing and diffusers LoRA export; FLUX: its own sigma grid; the toy: a prompt check and cached text
    features).

    Attributes:
        sample_shape: shape of one latent, without the batch dimension (e.g. (3, 32, 32) for the toy model).
        lora_target_modules: module-name suffixes a LoRA adapter may target (peft ``target_modules``); empty
            means the model cannot be trained.
        default_lora_rank: LoRA rank when the run names none (SD3: 32, FLUX: 64).
        default_lora_alpha: LoRA alpha that goes with ``default_lora_rank``; None: alpha = rank (scale 1).
        default_shift: the sigma-grid shift when the run names none (SD3.5's scheduler: 3.0).
        supports_gradient_checkpointing: whether :meth:`enable_gradient_checkpointing` works.
        exports_diffusers_lora: whether :meth:`save_diffusers_lora` writes an adapter diffusers can load.
    """

    sample_shape: tuple[int, ...]
    lora_target_modules: tuple[str, ...] = ()
    default_lora_rank: int = 16
    default_lora_alpha: float | None = None
    default_shift: float = 1.0
    supports_gradient_checkpointing: bool = False
    exports_diffusers_lora: bool = False

    def encode_prompts(self, prompts: list[str]) -> Conditioning:
        """Encode B prompts into batch-first conditioning tensors."""
        raise NotImplementedError(f"{type(self).__name__} must implement encode_prompts")

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
        raise NotImplementedError(f"{type(self).__name__} must implement velocity")

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Map clean latents [B, *sample_shape] to float images [B, 3, H, W] in [0, 1]."""
        raise NotImplementedError(f"{type(self).__name__} must implement decode")

    def check_prompts(self, prompts: list[str]) -> None:
        """Raise ``ValueError`` for a prompt the model cannot encode; by default any text is accepted.

        The toy model refuses unknown words and over-long prompts; the diffusers backends truncate.
        """

    def with_text_features(self, cond: Conditioning) -> Conditioning:
        """``cond`` prepared for no-grad sampling calls (e.g. the text encoder's output cached); by default itself.

        The environment calls it once per episode; velocities must be the same numbers with or without it.
        """
        return cond

    def sigma_grid(self, num_steps: int, shift: float = 1.0) -> torch.Tensor:
        """The sigma grid the model samples on, float32 [T + 1] from 1.0 down to 0.0.

        By default the shifted rectified-flow grid :func:`~creditzoo.sampling.schedule.flow_sigmas` (SD3, the toy);
        FLUX overrides it with its resolution-dependent grid.
        """
        return flow_sigmas(num_steps, shift)

    def enable_gradient_checkpointing(self) -> None:
        """Recompute activations in the backward pass (only where ``supports_gradient_checkpointing``).

        Raises:
            ValueError: the model has no gradient checkpointing (one line).
        """
        raise ValueError(
            f"{type(self).__name__} does not support gradient checkpointing; it needs an sd3 or flux model"
        )

    def save_diffusers_lora(
        self, directory: str | Path, peft_state: dict[str, torch.Tensor], lora_config: object
    ) -> None:
        """Write the adapter in diffusers' LoRA format (only where ``exports_diffusers_lora``).

        Args:
            directory: the checkpoint folder.
            peft_state: peft's state dict of the adapter (``get_peft_model_state_dict``).
            lora_config: the adapter's ``peft.LoraConfig``.

        Raises:
            NotImplementedError: the model has no diffusers format.
        """
        raise NotImplementedError(f"{type(self).__name__} has no diffusers LoRA format")
