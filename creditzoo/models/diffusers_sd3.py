"""Stable Diffusion 3 / 3.5 through diffusers as a :class:`~creditzoo.models.base.FlowModel`.

SD3 (Esser et al. 2024, "Scaling Rectified Flow Transformers for High-Resolution Image Synthesis",
arXiv 2403.03206) is an MMDiT trained with rectified flow, the convention of :mod:`creditzoo.models.base`
(``x_sigma = (1 - sigma) x0 + sigma * noise``, velocity ``noise - x0``). The facts used here are the ones
diffusers' ``StableDiffusion3Pipeline`` and Flow-GRPO (Liu et al. 2025, arXiv 2505.05470) agree on:

- the transformer takes ``timestep = sigma * 1000``, the prompt tokens as ``encoder_hidden_states``
  (CLIP-L and CLIP-G token embeddings, padded, concatenated with T5's) and ``pooled_projections``
  (the two CLIP pooled embeddings);
- classifier-free guidance runs as one batch of [negative, positive] with the empty prompt as negative,
  ``v = v_neg + g * (v_pos - v_neg)``; the empty prompt is encoded once per model and cached;
- decoding is ``vae.decode(latents / scaling_factor + shift_factor)``, images mapped from [-1, 1] to [0, 1].

Latents enter and velocities leave in float32 (the sampler's mean, std and log-prob stay float32); the
transformer runs in the weight dtype. The sigma grid is :func:`creditzoo.sampling.flow_sigmas` with the
configured shift, by default the pipeline scheduler's (``default_shift``; SD3.5: 3.0). LoRA targets SD3's
attention projections, rank 32, alpha 64 (Flow-GRPO's setting); the names are suffixes, so SD3.5-Medium's
second attention (``attn2``) is adapted too.
"""

from __future__ import annotations

import torch

from creditzoo.models._diffusers import DiffusersFlowModel, encode_unique, load_pipeline, vae_decode
from creditzoo.models.base import Conditioning

SD3_LORA_TARGET_MODULES: tuple[str, ...] = (
    "to_q",
    "to_k",
    "to_v",
    "to_out.0",
    "add_q_proj",
    "add_k_proj",
    "add_v_proj",
    "to_add_out",
)
"""peft ``target_modules`` (module-name suffixes) of the SD3 transformer's attention layers."""

DEFAULT_RESOLUTION = 512
"""Image side in pixels (Flow-GRPO and TP-GRPO train SD3.5-Medium at 512 x 512)."""


class SD3FlowModel(DiffusersFlowModel):
    """An SD3 pipeline's transformer, text encoders and VAE behind the FlowModel interface.

    Only the transformer is a submodule (so peft's LoRA and ``parameters()`` see nothing else); the text
    encoders and the VAE stay frozen in the pipeline object.

    Attributes:
        transformer: the ``SD3Transformer2DModel`` (LoRA goes here).
        sample_shape: ``(C, H / f, W / f)``, C latent channels and f the VAE's downscaling factor.
        resolution: image side in pixels.
        max_sequence_length: T5 tokens per prompt.
    """

    lora_target_modules: tuple[str, ...] = SD3_LORA_TARGET_MODULES
    default_lora_rank: int = 32
    default_lora_alpha: float = 64.0

    def __init__(self, pipeline: object, *, resolution: int = DEFAULT_RESOLUTION, max_sequence_length: int = 256):
        """Wrap a ``StableDiffusion3Pipeline``.

        Args:
            pipeline: the loaded pipeline (its components already on their device and dtype).
            resolution: image side in pixels; must be a multiple of the VAE factor times the patch size.
            max_sequence_length: T5 tokens per prompt (the pipeline's default is 256).
        """
        super().__init__()
        self.transformer = pipeline.transformer  # type: ignore[attr-defined]
        self._pipeline = pipeline  # not a Module: its encoders and VAE stay out of parameters() and LoRA
        factor = pipeline.vae_scale_factor * self.transformer.config.patch_size  # type: ignore[attr-defined]
        if resolution < factor or resolution % factor:
            raise ValueError(f"resolution must be a positive multiple of {factor}, got {resolution}")
        if max_sequence_length < 1:
            raise ValueError(f"max_sequence_length must be >= 1, got {max_sequence_length}")
        self.resolution = int(resolution)
        self.max_sequence_length = int(max_sequence_length)
        side = self.resolution // pipeline.vae_scale_factor  # type: ignore[attr-defined]
        self.sample_shape: tuple[int, ...] = (self.transformer.config.in_channels, side, side)
        self._negative: Conditioning | None = None
        self.default_shift = float(pipeline.scheduler.config.get("shift", 1.0))  # type: ignore[attr-defined]
        """The scheduler's static shift (SD3.5: 3.0), used when the configuration sets none."""

    @property
    def pipeline(self) -> object:
        """The wrapped diffusers pipeline (shares the transformer, so it runs with the adapter too)."""
        return self._pipeline

    @property
    def device(self) -> torch.device:
        """Device of the transformer's weights."""
        return next(self.transformer.parameters()).device

    @torch.no_grad()
    def encode_prompts(self, prompts: list[str]) -> Conditioning:
        """Encode B prompts with the three text encoders, each distinct prompt once.

        Returns:
            {"prompt_embeds": [B, 77 + L, D], "pooled_projections": [B, P]} in the weight dtype, L the T5 length.
        """
        return encode_unique(self._encode, list(prompts))

    def _encode(self, prompts: list[str]) -> Conditioning:
        embeds, _, pooled, _ = self._pipeline.encode_prompt(  # type: ignore[attr-defined]
            prompt=prompts,
            prompt_2=None,
            prompt_3=None,
            device=self.device,
            do_classifier_free_guidance=False,
            max_sequence_length=self.max_sequence_length,
        )
        return {"prompt_embeds": embeds, "pooled_projections": pooled}

    def negative_conditioning(self) -> Conditioning:
        """The empty prompt's conditioning (one row), encoded on first use and cached."""
        if self._negative is None or self._negative["prompt_embeds"].device != self.device:
            self._negative = self.encode_prompts([""])
        return self._negative

    def velocity(
        self,
        latents: torch.Tensor,
        sigma: torch.Tensor,
        cond: Conditioning,
        *,
        guidance_scale: float = 1.0,
    ) -> torch.Tensor:
        """Velocity float32 [B, C, h, w] at ``latents`` [B, C, h, w] and noise levels ``sigma`` [B].

        With ``guidance_scale != 1`` the batch runs once as [negative, positive] (2B rows).
        """
        batch = latents.shape[0]
        dtype = self.transformer.dtype
        sigma = torch.as_tensor(sigma, dtype=torch.float32, device=latents.device).expand(batch)  # [B]
        hidden, embeds, pooled = latents.to(dtype), cond["prompt_embeds"], cond["pooled_projections"]
        guided = guidance_scale != 1.0
        if guided:
            negative = self.negative_conditioning()
            embeds = torch.cat([negative["prompt_embeds"].expand(batch, -1, -1), embeds])  # [2B, L, D]
            pooled = torch.cat([negative["pooled_projections"].expand(batch, -1), pooled])  # [2B, P]
            hidden, sigma = torch.cat([hidden, hidden]), torch.cat([sigma, sigma])
        out = self.transformer(
            hidden_states=hidden,
            timestep=sigma * 1000.0,
            encoder_hidden_states=embeds,
            pooled_projections=pooled,
            return_dict=False,
        )[0].float()  # [B or 2B, C, h, w]
        if not guided:
            return out
        v_negative, v_positive = out.chunk(2)
        return v_negative + guidance_scale * (v_positive - v_negative)

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Clean latents [B, C, h, w] -> float32 images [B, 3, H, W] in [0, 1]."""
        return vae_decode(self._pipeline.vae, latents)  # type: ignore[attr-defined]


def load_sd3(
    path: str | None,
    *,
    device: torch.device,
    dtype: torch.dtype = torch.float32,
    resolution: int = DEFAULT_RESOLUTION,
    max_sequence_length: int = 256,
) -> SD3FlowModel:
    """The ``sd3:PATH`` entry of :data:`creditzoo.models.MODELS`.

    Args:
        path: a diffusers SD3 folder (``pipe.save_pretrained``) or a hub id in the local cache.
        device: where the weights go.
        dtype: weight dtype of every component.
        resolution: image side in pixels.
        max_sequence_length: T5 tokens per prompt.

    Returns:
        :class:`SD3FlowModel` in eval mode, every weight frozen.
    """
    from diffusers import StableDiffusion3Pipeline

    from creditzoo.models import ModelError

    if not path:
        raise ModelError("sd3 needs a path: sd3:/path/to/stable-diffusion-3.5-medium")
    pipeline = load_pipeline(StableDiffusion3Pipeline, path, device=device, dtype=dtype)
    return SD3FlowModel(pipeline, resolution=resolution, max_sequence_length=max_sequence_length).eval()
