"""Image conversions shared by the rewards that hand images to other libraries (OCR, CLIP, a GenEval server)."""

from __future__ import annotations

import numpy as np
import torch


def to_uint8_images(images: torch.Tensor) -> np.ndarray:
    """Float images [B, 3, H, W] in [0, 1] -> uint8 [B, H, W, 3] (``round(255 x)``, clamped) on the CPU.

    This is the conversion Flow-GRPO applies before every external scorer.

    Raises:
        ValueError: if ``images`` is not [B, 3, H, W].
    """
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"images must have shape [B, 3, H, W], got {list(images.shape)}")
    pixels = (images.detach().float() * 255).round().clamp(0, 255).to(torch.uint8)  # [B, 3, H, W]
    return pixels.permute(0, 2, 3, 1).cpu().numpy()  # [B, H, W, 3]
