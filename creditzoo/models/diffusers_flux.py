"""FLUX.1-dev through diffusers as a :class:`~creditzoo.models.base.FlowModel`.

FLUX.1 (Black Forest Labs 2024, "FLUX.1"; architecture and sampler as implemented in diffusers'
``FluxPipeline``, and as Flow-GRPO, Liu et al. 2025, arXiv 2505.05470, trains it) is a rectified-flow
MMDiT with double-stream and single-stream blocks. FLUX.1-dev is guidance-distilled:

- no classifier-free guidance; the guidance strength enters as an embedding, ``guidance`` (3.5 by default,
  a model option), and ``velocity`` rejects ``guidance_scale != 1``;
- the transformer takes ``timestep = sigma`` (it multiplies by 1000 itself), prompt tokens from T5 as
  ``encoder_hidden_states`` with ``txt_ids`` (zeros), the CLIP pooled embedding as ``pooled_projections``;
- latents are packed 2x2: a ``[C, h, w]`` VAE latent becomes ``[(h/2)(w/2), 4C]`` tokens with ``img_ids``
  (row, column) positions. **``sample_shape`` is the packed shape** ``(h/2 * w/2, 4C)``: the sampler, the
  SDE noise and the log-prob live in the packed space (a permutation of the unpacked one, so the Gaussian
  densities are the same); :meth:`FluxFlowModel.decode` unpacks;
- the sigma grid is resolution-dependent: ``mu`` from the packed sequence length (``calculate_shift``) and the
  scheduler's exponential dynamic shift, :func:`creditzoo.sampling.flow_sigmas` with ``mu`` (the configured
  static ``shift`` must stay 1.0);
- decoding is ``vae.decode(latents / scaling_factor + shift_factor)``.

Latents enter and velocities leave in float32; the transformer runs in the weight dtype. LoRA targets the
attention projections and the feed-forward layers of both streams of the double-stream blocks (``ff`` for the
image tokens, ``ff_context`` for the text tokens), rank 64, alpha 128.
"""

from __future__ import annotations

import torch

from creditzoo.models._diffusers import DiffusersFlowModel, encode_unique, load_pipeline, vae_decode
from creditzoo.models.base import Conditioning
from creditzoo.sampling import flow_sigmas, flux_mu

FLUX_LORA_TARGET_MODULES: tuple[str, ...] = (
    "to_q",
    "to_k",
    "to_v",
    "to_out.0",
    "add_q_proj",
    "add_k_proj",
    "add_v_proj",
    "to_add_out",
    "ff.net.0.proj",
    "ff.net.2",
    "ff_context.net.0.proj",
    "ff_context.net.2",
)
"""peft ``target_modules`` (module-name suffixes): attention of every block, feed-forward of both streams."""

DEFAULT_RESOLUTION = 512
DEFAULT_GUIDANCE = 3.5


class FluxFlowModel(DiffusersFlowModel):
    """A FLUX pipeline's transformer, text encoders and VAE behind the FlowModel interface.

    Attributes:
        transformer: the ``FluxTransformer2DModel`` (LoRA goes here).
        sample_shape: packed latent shape ``(N, 4C)``, N = (H / 2f) * (W / 2f) tokens for an H x W image and
            VAE factor f.
        resolution: image side in pixels.
        guidance: the distilled guidance strength fed to the guidance embedding.
        max_sequence_length: T5 tokens per prompt.
    """

    lora_target_modules: tuple[str, ...] = FLUX_LORA_TARGET_MODULES
    default_lora_rank: int = 64
    default_lora_alpha: float = 128.0
    default_shift: float = 1.0  # no static shift on top of the resolution-dependent one

    def __init__(
        self,
        pipeline: object,
        *,
        resolution: int = DEFAULT_RESOLUTION,
        guidance: float = DEFAULT_GUIDANCE,
        max_sequence_length: int = 512,
    ) -> None:
        """Wrap a ``FluxPipeline``.

        Args:
            pipeline: the loaded pipeline (components already on their device and dtype).
            resolution: image side in pixels, a multiple of twice the VAE factor.
            guidance: guidance-embedding strength (FLUX.1-dev: 3.5); ignored by models without the embedding.
            max_sequence_length: T5 tokens per prompt (<= 512).
        """
        super().__init__()
        self.transformer = pipeline.transformer  # type: ignore[attr-defined]
        self._pipeline = pipeline  # not a Module: its encoders and VAE stay out of parameters() and LoRA
        factor = 2 * pipeline.vae_scale_factor  # type: ignore[attr-defined]
        if resolution < factor or resolution % factor:
            raise ValueError(f"resolution must be a positive multiple of {factor}, got {resolution}")
        if not 1 <= max_sequence_length <= 512:
            raise ValueError(f"max_sequence_length must be in 1..512, got {max_sequence_length}")
        if not guidance >= 0:
            raise ValueError(f"guidance must be >= 0, got {guidance}")
        scheduler = pipeline.scheduler.config  # type: ignore[attr-defined]
        if not scheduler.get("use_dynamic_shifting", False):
            raise ValueError("only FLUX schedulers with use_dynamic_shifting (FLUX.1-dev) are supported")
        self.resolution = int(resolution)
        self.guidance = float(guidance)
        self.max_sequence_length = int(max_sequence_length)
        self._side = self.resolution // factor  # packed tokens per row and column
        channels = self.transformer.config.in_channels  # 4C
        self.sample_shape: tuple[int, ...] = (self._side * self._side, channels)
        self._mu = flux_mu(
            self._side * self._side,
            base_seq_len=scheduler.get("base_image_seq_len", 256),
            max_seq_len=scheduler.get("max_image_seq_len", 4096),
            base_shift=scheduler.get("base_shift", 0.5),
            max_shift=scheduler.get("max_shift", 1.15),
        )

    @property
    def pipeline(self) -> object:
        """The wrapped diffusers pipeline (shares the transformer, so it runs with the adapter too)."""
        return self._pipeline

    @property
    def device(self) -> torch.device:
        """Device of the transformer's weights."""
        return next(self.transformer.parameters()).device

    def sigma_grid(self, num_steps: int, shift: float = 1.0) -> torch.Tensor:
        """FLUX's resolution-dependent grid, float32 [T + 1], as ``FluxPipeline`` sets it.

        Raises:
            ModelError: for a static ``shift`` other than 1.0 (FLUX's shift comes from the resolution).
        """
        from creditzoo.models import ModelError

        if shift != 1.0:
            raise ModelError(
                f"FLUX's sigma shift is resolution-dependent (mu={self._mu:.4f}); leave shift at 1.0, got {shift}"
            )
        return flow_sigmas(num_steps, mu=self._mu)

    @torch.no_grad()
    def encode_prompts(self, prompts: list[str]) -> Conditioning:
        """Encode B prompts, each distinct one once: {"prompt_embeds": [B, L, D] (T5), "pooled_projections": [B, P]}."""
        return encode_unique(self._encode, list(prompts))

    def _encode(self, prompts: list[str]) -> Conditioning:
        embeds, pooled, _ = self._pipeline.encode_prompt(  # type: ignore[attr-defined]
            prompt=prompts,
            prompt_2=None,
            device=self.device,
            max_sequence_length=self.max_sequence_length,
        )
        return {"prompt_embeds": embeds, "pooled_projections": pooled}

    def image_ids(self) -> torch.Tensor:
        """Positions (0, row, column) of the packed latent tokens, [N, 3]."""
        rows = torch.arange(self._side).repeat_interleave(self._side)
        cols = torch.arange(self._side).repeat(self._side)
        return torch.stack([torch.zeros_like(rows), rows, cols], dim=1).to(self.device, self.transformer.dtype)

    def velocity(
        self,
        latents: torch.Tensor,
        sigma: torch.Tensor,
        cond: Conditioning,
        *,
        guidance_scale: float = 1.0,
    ) -> torch.Tensor:
        """Velocity float32 [B, N, 4C] at packed ``latents`` [B, N, 4C] and noise levels ``sigma`` [B].

        Raises:
            ModelError: for ``guidance_scale != 1`` (FLUX.1-dev is guidance-distilled: set the model's
                ``guidance`` instead).
        """
        if guidance_scale != 1.0:
            from creditzoo.models import ModelError

            raise ModelError(
                f"FLUX.1-dev has no classifier-free guidance (guidance_scale must be 1, got {guidance_scale}); "
                f"its distilled guidance is the model option guidance={self.guidance}"
            )
        batch = latents.shape[0]
        dtype = self.transformer.dtype
        sigma = torch.as_tensor(sigma, dtype=torch.float32, device=latents.device).expand(batch)  # [B]
        embeds = cond["prompt_embeds"]
        guidance = None
        if self.transformer.config.guidance_embeds:
            guidance = torch.full((batch,), self.guidance, dtype=torch.float32, device=latents.device)  # [B]
        text_ids = torch.zeros(embeds.shape[1], 3, device=latents.device, dtype=dtype)  # [L, 3]
        out = self.transformer(
            hidden_states=latents.to(dtype),
            timestep=sigma,
            guidance=guidance,
            pooled_projections=cond["pooled_projections"],
            encoder_hidden_states=embeds,
            txt_ids=text_ids,
            img_ids=self.image_ids(),
            return_dict=False,
        )[0]
        return out.float()  # [B, N, 4C]

    def unpack(self, latents: torch.Tensor) -> torch.Tensor:
        """Packed latents [B, N, 4C] -> VAE latents [B, C, h, w] (inverse of diffusers' ``_pack_latents``)."""
        batch, _, channels = latents.shape
        side = self._side
        grid = latents.reshape(batch, side, side, channels // 4, 2, 2).permute(0, 3, 1, 4, 2, 5)
        return grid.reshape(batch, channels // 4, 2 * side, 2 * side)

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Clean packed latents [B, N, 4C] -> float32 images [B, 3, H, W] in [0, 1]."""
        return vae_decode(self._pipeline.vae, self.unpack(latents))  # type: ignore[attr-defined]


def load_flux(
    path: str | None,
    *,
    device: torch.device,
    dtype: torch.dtype = torch.float32,
    resolution: int = DEFAULT_RESOLUTION,
    guidance: float = DEFAULT_GUIDANCE,
    max_sequence_length: int = 512,
) -> FluxFlowModel:
    """The ``flux:PATH`` entry of :data:`creditzoo.models.MODELS`.

    Args:
        path: a diffusers FLUX folder (``pipe.save_pretrained``) or a hub id in the local cache.
        device: where the weights go.
        dtype: weight dtype of every component.
        resolution: image side in pixels.
        guidance: distilled guidance strength.
        max_sequence_length: T5 tokens per prompt.

    Returns:
        :class:`FluxFlowModel` in eval mode, every weight frozen.
    """
    from diffusers import FluxPipeline

    from creditzoo.models import ModelError

    if not path:
        raise ModelError("flux needs a path: flux:/path/to/FLUX.1-dev")
    pipeline = load_pipeline(FluxPipeline, path, device=device, dtype=dtype)
    return FluxFlowModel(
        pipeline, resolution=resolution, guidance=guidance, max_sequence_length=max_sequence_length
    ).eval()
