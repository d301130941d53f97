"""What the diffusers backends share: loading a pipeline offline, and exporting LoRA in diffusers' format.

Only :mod:`creditzoo.models.diffusers_sd3` and :mod:`creditzoo.models.diffusers_flux` import this module;
diffusers itself is imported inside the functions.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch

from creditzoo.models import ModelError
from creditzoo.models.base import Conditioning, FlowModel, select_conditioning

LORA_METADATA_KEYS = ("r", "lora_alpha", "target_modules", "lora_dropout", "bias", "use_rslora", "use_dora")
"""The LoraConfig fields written into a diffusers LoRA file (what its loader needs to rebuild the adapter)."""


def load_pipeline(pipeline_class: type, path: str, *, device: torch.device, dtype: torch.dtype) -> object:
    """Load a diffusers pipeline from a local folder or the local hub cache, weights in ``dtype`` on ``device``.

    Nothing is downloaded (``local_files_only=True``). Weights are created on the meta device and filled from
    the checkpoint (diffusers' ``low_cpu_mem_usage``), so each tensor is materialised once before the move.

    Args:
        pipeline_class: e.g. ``diffusers.StableDiffusion3Pipeline``.
        path: a folder written by ``pipe.save_pretrained`` or a hub id present in the local cache.
        device: where the weights go.
        dtype: weight dtype of every component.

    Returns:
        The pipeline, every component in eval mode with gradients off.

    Raises:
        ModelError: the folder does not exist, or the id is not in the local cache.
    """
    is_hub_id = not Path(path).exists() and path.count("/") == 1 and not path.startswith(("/", ".", "~"))
    if not is_hub_id and not Path(path).is_dir():
        raise ModelError(f"model folder {path!r} does not exist; give a diffusers folder or a cached hub id")
    try:
        pipeline = pipeline_class.from_pretrained(path, dtype=dtype, local_files_only=True)
    except (OSError, ValueError) as error:
        first = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise ModelError(
            f"cannot load a {pipeline_class.__name__} from {path!r} without downloading: {first}"
        ) from error
    pipeline.to(device)
    for component in pipeline.components.values():
        if isinstance(component, torch.nn.Module):
            component.eval().requires_grad_(False)
    return pipeline


def encode_unique(encode: Callable[[list[str]], Conditioning], prompts: list[str]) -> Conditioning:
    """Encode each distinct prompt once and gather the rows back (a GRPO batch repeats every prompt G times).

    Args:
        encode: the text encoders, ``list of U distinct prompts -> Conditioning with U rows``.
        prompts: B prompts, repeats allowed.

    Returns:
        Conditioning with B rows, row i the encoding of ``prompts[i]``.
    """
    unique = list(dict.fromkeys(prompts))
    position = {prompt: i for i, prompt in enumerate(unique)}
    cond = encode(unique)
    if len(unique) == len(prompts):
        return cond
    index = torch.tensor([position[prompt] for prompt in prompts], dtype=torch.int64)  # [B]
    return select_conditioning(cond, index)


def transformer_lora_state(peft_state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The transformer's LoRA weights, keys relative to it, from peft's state dict of a wrapped FlowModel.

    ``base_model.model.transformer.transformer_blocks.0.attn.to_q.lora_A.weight`` becomes
    ``transformer_blocks.0.attn.to_q.lora_A.weight``, the form diffusers' ``save_lora_weights`` takes as
    ``transformer_lora_layers`` (it adds its own ``transformer.`` prefix).

    Raises:
        ValueError: a key that is not under the model's ``transformer`` (nothing else may carry LoRA).
    """
    marker = "transformer."
    state = {}
    for key, value in peft_state.items():
        head, found, tail = key.partition(marker)
        if not found or head not in ("", "base_model.model."):
            raise ValueError(f"LoRA weight {key!r} is not on the transformer; cannot export it to diffusers")
        state[tail] = value.detach().cpu().contiguous()
    return state


def save_transformer_lora(
    pipeline_class: type, directory: str | Path, peft_state: dict[str, torch.Tensor], lora_config: object
) -> Path:
    """Write ``pytorch_lora_weights.safetensors`` that ``pipe.load_lora_weights(directory)`` loads.

    Args:
        pipeline_class: the pipeline whose ``save_lora_weights`` writes the file (its LoRA loader mixin).
        directory: the checkpoint folder.
        peft_state: ``peft.get_peft_model_state_dict(policy)``.
        lora_config: the adapter's ``peft.LoraConfig``; its rank, alpha and targets go into the file's metadata,
            so the loader scales the adapter by alpha / rank as training did.

    Returns:
        Path of the written file.
    """
    config = lora_config.to_dict()  # type: ignore[attr-defined]
    metadata = {key: config[key] for key in LORA_METADATA_KEYS if key in config}
    metadata["target_modules"] = sorted(metadata["target_modules"])
    pipeline_class.save_lora_weights(  # type: ignore[attr-defined]
        str(directory),
        transformer_lora_layers=transformer_lora_state(peft_state),
        transformer_lora_adapter_metadata=metadata,
    )
    return Path(directory) / "pytorch_lora_weights.safetensors"


def vae_decode(vae: torch.nn.Module, latents: torch.Tensor) -> torch.Tensor:
    """Clean latents [B, C, h, w] -> float32 images [B, 3, H, W] in [0, 1], undoing the VAE's scale and shift.

    ``latents / scaling_factor + shift_factor`` from the VAE config, as SD3's and FLUX's pipelines decode.
    """
    scaled = latents / vae.config.scaling_factor + vae.config.shift_factor
    images = vae.decode(scaled.to(vae.dtype), return_dict=False)[0]
    return (images.float() / 2 + 0.5).clamp(0, 1)


class DiffusersFlowModel(FlowModel):
    """What the SD3 and FLUX wrappers share about their diffusers transformer: checkpointing and LoRA export.

    The wrapper keeps its pipeline in ``self._pipeline`` and its transformer in ``self.transformer``.
    """

    supports_gradient_checkpointing: bool = True
    exports_diffusers_lora: bool = True

    def enable_gradient_checkpointing(self) -> None:
        """Recompute the transformer's block activations in the backward pass (diffusers' checkpointing)."""
        self.transformer.enable_gradient_checkpointing()  # type: ignore[attr-defined]

    def save_diffusers_lora(
        self, directory: str | Path, peft_state: dict[str, torch.Tensor], lora_config: object
    ) -> None:
        """Write the adapter as ``pytorch_lora_weights.safetensors`` for ``pipe.load_lora_weights(directory)``.

        Saved through the wrapped pipeline's own class (``StableDiffusion3Pipeline``, ``FluxPipeline``), whose
        ``save_lora_weights`` names the keys the way that pipeline loads them.
        """
        save_transformer_lora(type(self._pipeline), directory, peft_state, lora_config)  # type: ignore[attr-defined]
