"""PickScore: a CLIP model fine-tuned on human preferences between generated images.

Kirstain et al., 2023, "Pick-a-Pic: An Open Dataset of User Preferences for Text-to-Image Generation"
define PickScore as CLIP's scaled cosine similarity ``s(x, c) = exp(t) * cos(E_img(x), E_txt(c))`` with the
PickScore_v1 weights (a fine-tuned CLIP-ViT-H-14). Flow-GRPO (Liu et al., 2025) trains on it divided by 26,
which maps typical scores to about [0.8, 0.9]; this module computes exactly that, in float32:

    reward = logit_scale.exp() * cosine(image_embeds, text_embeds) / 26

Images are converted to uint8 as Flow-GRPO does (``round(255 x)``) and preprocessed by the CLIP processor
(resize, centre crop, normalise); text is tokenised with padding and truncation to 77 tokens.

Weights: nothing is downloaded. :class:`PickScoreReward` loads from a local folder or the local hub cache
(``local_files_only``). Flow-GRPO loads the model from ``yuvalkirstain/PickScore_v1`` and the processor
from ``laion/CLIP-ViT-H-14-laion2B-s32B-b79K``; the registered reward (:func:`pickscore_reward`) uses those
names unless the environment variables ``CREDITZOO_PICKSCORE_MODEL`` / ``CREDITZOO_PICKSCORE_PROCESSOR``
name other folders (the processor defaults to the model's folder when only the model is set).
"""

from __future__ import annotations

import functools
import os
import threading
from pathlib import Path
from typing import Any

import torch

from creditzoo.rewards._images import to_uint8_images

PICKSCORE_SCALE = 26.0
"""Flow-GRPO's normalisation of PickScore."""

MODEL_ENV, PROCESSOR_ENV = "CREDITZOO_PICKSCORE_MODEL", "CREDITZOO_PICKSCORE_PROCESSOR"
"""Environment variables naming the PickScore model and processor (local folders or hub ids in the cache)."""

DEFAULT_MODEL, DEFAULT_PROCESSOR = "yuvalkirstain/PickScore_v1", "laion/CLIP-ViT-H-14-laion2B-s32B-b79K"
"""Flow-GRPO's model and processor, looked up in the local hub cache only."""

MAX_TEXT_TOKENS = 77
"""CLIP's text context."""


class PickScoreReward:
    """PickScore / 26 as a reward callable ``(images [B, 3, H, W] in [0, 1], prompts) -> float32 [B]``.

    Args:
        model: a ``transformers.CLIPModel`` (PickScore_v1 in practice); it is put in eval mode and float32.
        processor: the matching ``transformers.CLIPProcessor`` (image processor and tokenizer).
        batch_size: images embedded per forward pass (bounds the memory of one call).

    Scores are computed on the model's device; the model moves to the images' device on the first call that
    brings images from another device.
    """

    def __init__(self, model: Any, processor: Any, *, batch_size: int = 64) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.model = model.eval().float().requires_grad_(False)
        self.processor = processor
        self.batch_size = batch_size
        self._lock = threading.Lock()

    @classmethod
    def from_pretrained(
        cls, model_path: str | Path, processor_path: str | Path | None = None, **kwargs: Any
    ) -> PickScoreReward:
        """Load a CLIP model and processor from local folders (or the local hub cache); never downloads.

        Args:
            model_path: folder (or cached hub id) of the CLIP model, e.g. PickScore_v1.
            processor_path: folder (or cached hub id) of the processor; default: ``model_path``.
            **kwargs: passed to the constructor (``batch_size``).

        Raises:
            ValueError: one line naming the path when the model or processor cannot be loaded.
        """
        from transformers import CLIPModel, CLIPProcessor

        processor_path = model_path if processor_path is None else processor_path
        try:
            model = CLIPModel.from_pretrained(str(model_path), local_files_only=True)
        except (OSError, ValueError) as error:
            raise ValueError(
                f"cannot load the PickScore model from {str(model_path)!r} (local files only): "
                f"{str(error).splitlines()[0]}; set {MODEL_ENV} to a local PickScore_v1 folder"
            ) from None
        try:
            processor = CLIPProcessor.from_pretrained(str(processor_path), local_files_only=True)
        except (OSError, ValueError) as error:
            raise ValueError(
                f"cannot load the CLIP processor from {str(processor_path)!r} (local files only): "
                f"{str(error).splitlines()[0]}; set {PROCESSOR_ENV} to a local CLIP processor folder"
            ) from None
        return cls(model, processor, **kwargs)

    @property
    def device(self) -> torch.device:
        """Where the model is."""
        return next(self.model.parameters()).device

    @torch.no_grad()
    def embed_images(self, images: torch.Tensor) -> torch.Tensor:
        """Unit-norm image embeddings, float32 [B, D], of ``images`` [B, 3, H, W] in [0, 1]."""
        pixels = self.processor(images=list(to_uint8_images(images)), return_tensors="pt")["pixel_values"]
        embeds = _features(self.model.get_image_features(pixel_values=pixels.to(self.device, torch.float32)))
        return embeds / embeds.norm(dim=-1, keepdim=True)  # [B, D]

    @torch.no_grad()
    def embed_texts(self, prompts: list[str]) -> torch.Tensor:
        """Unit-norm text embeddings, float32 [B, D]."""
        tokens = self.processor(
            text=prompts, padding=True, truncation=True, max_length=MAX_TEXT_TOKENS, return_tensors="pt"
        )
        embeds = _features(
            self.model.get_text_features(
                input_ids=tokens["input_ids"].to(self.device), attention_mask=tokens["attention_mask"].to(self.device)
            )
        )
        return embeds / embeds.norm(dim=-1, keepdim=True)  # [B, D]

    def __call__(self, images: torch.Tensor, prompts: list[str]) -> torch.Tensor:
        """PickScore / 26 of each (image, prompt) pair.

        Args:
            images: float [B, 3, H, W] in [0, 1].
            prompts: B prompts.

        Returns:
            float32 [B] on the model's device.
        """
        if len(prompts) != images.shape[0]:
            raise ValueError(f"got {images.shape[0]} images but {len(prompts)} prompts")
        with self._lock:
            if images.device != self.device:
                self.model.to(images.device)
            scores = []
            for start in range(0, len(prompts), self.batch_size):
                stop = start + self.batch_size
                image_embeds = self.embed_images(images[start:stop])  # [b, D]
                text_embeds = self.embed_texts(prompts[start:stop])  # [b, D]
                cosine = (image_embeds * text_embeds).sum(dim=-1)  # [b]
                scores.append(self.model.logit_scale.exp().float() * cosine / PICKSCORE_SCALE)
            return torch.cat(scores)


def _features(output: Any) -> torch.Tensor:
    """The projected embeddings [B, D] (newer transformers return a model output instead of a tensor)."""
    if isinstance(output, torch.Tensor):
        return output.float()
    pooled = getattr(output, "pooler_output", None)
    if pooled is None:
        raise TypeError(f"unexpected CLIP feature output {type(output).__name__}")
    return pooled.float()


@functools.cache
def default_pickscore_reward() -> PickScoreReward:
    """The process-wide PickScore reward, from ``$CREDITZOO_PICKSCORE_MODEL`` (default: PickScore_v1 in the cache)."""
    model = os.environ.get(MODEL_ENV) or DEFAULT_MODEL
    processor = os.environ.get(PROCESSOR_ENV) or (model if os.environ.get(MODEL_ENV) else DEFAULT_PROCESSOR)
    return PickScoreReward.from_pretrained(model, processor)


def pickscore_reward(images: torch.Tensor, prompts: list[str]) -> torch.Tensor:
    """PickScore / 26 with the default model: ``images`` [B, 3, H, W] in [0, 1] -> float32 [B]."""
    return default_pickscore_reward()(images, prompts)
