"""Text-rendering reward: how well an image shows the text its prompt puts in double quotes.

Flow-GRPO (Liu et al., 2025, "Flow-GRPO: Training Flow Matching Models via Online RL", visual text rendering)
rewards ``r = 1 - min(N_e, N_ref) / N_ref``, where ``N_ref`` is the length of the text to render
and ``N_e`` the edit distance between it and what an OCR model reads in the image. As in its code:

* the target is the text between the first pair of double quotes of the prompt;
* spaces are removed and both the target and the recognised text are lowercased;
* the recognised text is every line the recogniser read, concatenated in its reading order;
* if the target is contained in the recognised text, ``N_e = 0`` (extra text is not penalised); otherwise
  ``N_e`` is the Levenshtein distance between the two strings, capped at ``N_ref``.

An image with no text reads as the empty string, so it scores ``1 - N_ref / N_ref = 0``.

The recogniser is RapidOCR (PaddleOCR's PP-OCR detection and recognition models run with onnxruntime; the
``rapidocr`` wheel ships the models, so it works offline). Install it with ``pip install creditzoo[ocr]``.
Flow-GRPO used PaddleOCR; RapidOCR runs PaddleOCR's models without the paddle framework.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable

import numpy as np
import torch

from creditzoo.rewards._images import to_uint8_images

RAPIDOCR_DEFAULTS: dict[str, object] = {
    "Global.log_level": "error",
    "Global.use_cls": False,
    "Det.limit_type": "max",
    "Det.limit_side_len": 960,
}
"""RapidOCR settings matching Flow-GRPO's PaddleOCR call (``use_angle_cls=False``; PaddleOCR's detector input
shrinks images whose longer side exceeds 960 px and never enlarges them). RapidOCR's own default enlarges the
shorter side to 736 px, about 10x slower on small images."""

Recogniser = Callable[[np.ndarray], str]
"""``(uint8 image [H, W, 3], RGB) -> the text read in it`` (lines concatenated; "" when there is none)."""


def ocr_target(prompt: str) -> str:
    """The text a prompt asks to render: between its first two double quotes, spaces removed, lowercased.

    Raises:
        ValueError: if the prompt has no pair of double quotes or the quoted text is blank.
    """
    parts = prompt.split('"')
    if len(parts) < 3:
        raise ValueError(f'an ocr prompt must put the text to render in double quotes ("..."), got {prompt!r}')
    target = normalise_text(parts[1])
    if not target:
        raise ValueError(f"the quoted text of an ocr prompt must not be blank, got {prompt!r}")
    return target


def normalise_text(text: str) -> str:
    """Remove spaces and lowercase (both sides of the comparison go through this)."""
    return text.replace(" ", "").lower()


def edit_distance(a: str, b: str) -> int:
    """Levenshtein distance: the fewest insertions, deletions and substitutions turning ``a`` into ``b``."""
    if len(a) < len(b):
        a, b = b, a
    previous = list(range(len(b) + 1))
    for i, char_a in enumerate(a, start=1):
        current = [i]
        for j, char_b in enumerate(b, start=1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (char_a != char_b)))
        previous = current
    return previous[-1]


def ocr_text_score(target: str, recognised: str) -> float:
    """Flow-GRPO's OCR reward for one image, in [0, 1].

    Args:
        target: the text to render (normalised here: spaces removed, lowercased); must not be blank.
        recognised: what the recogniser read (normalised here too).

    Returns:
        1.0 if the target occurs in the recognised text, else ``1 - min(distance, len) / len``.
    """
    target, recognised = normalise_text(target), normalise_text(recognised)
    if not target:
        raise ValueError("the target text must not be blank")
    if target in recognised:
        return 1.0
    return 1.0 - min(edit_distance(recognised, target), len(target)) / len(target)


class RapidOcrRecogniser:
    """Reads the text in an image with RapidOCR: text detection, then recognition of each detected line.

    Args:
        min_confidence: lines recognised with a lower confidence are dropped (Flow-GRPO keeps every line with
            a confidence above 0).
        params: RapidOCR parameters over ``RAPIDOCR_DEFAULTS`` (e.g. ``{"EngineConfig.onnxruntime.use_cuda": True}``).

    Raises:
        ImportError: when ``rapidocr`` or ``onnxruntime`` is missing, saying how to install them.
    """

    def __init__(self, *, min_confidence: float = 0.0, params: dict[str, object] | None = None) -> None:
        try:
            from rapidocr import RapidOCR
        except ImportError as error:
            raise ImportError(
                f"the ocr reward needs rapidocr and onnxruntime ({error}); install them with "
                "pip install 'creditzoo[ocr]'"
            ) from error
        self.min_confidence = float(min_confidence)
        self._engine = RapidOCR(params={**RAPIDOCR_DEFAULTS, **(params or {})})
        self._lock = threading.Lock()  # onnxruntime sessions are thread-safe; the engine's Python state is not

    def __call__(self, image: np.ndarray) -> str:
        """Read ``image`` (uint8 [H, W, 3], RGB); returns the lines read, concatenated ("" if none)."""
        bgr = np.ascontiguousarray(image[:, :, ::-1])  # RapidOCR takes arrays in OpenCV's BGR order
        with self._lock:
            result = self._engine(bgr)
        texts, scores = getattr(result, "txts", None), getattr(result, "scores", None)
        if not texts:
            return ""
        return "".join(t for t, s in zip(texts, scores, strict=True) if s > self.min_confidence)


class OcrReward:
    """Flow-GRPO's OCR reward as a reward callable ``(images, prompts) -> float32 [B]``.

    Args:
        recogniser: reads one image; default: :class:`RapidOcrRecogniser`, built on first use.

    Example:
        >>> reward = OcrReward(lambda image: "HELLO")
        >>> reward(torch.zeros(1, 3, 8, 8), ['a sign that says "Hello"'])
        tensor([1.])
    """

    def __init__(self, recogniser: Recogniser | None = None) -> None:
        self._recogniser = recogniser

    @property
    def recogniser(self) -> Recogniser:
        """The recogniser (RapidOCR unless one was given), loaded on first use."""
        if self._recogniser is None:
            self._recogniser = RapidOcrRecogniser()
        return self._recogniser

    def read(self, images: torch.Tensor) -> list[str]:
        """The text read in each image of ``images`` [B, 3, H, W] in [0, 1]."""
        return [self.recogniser(image) for image in to_uint8_images(images)]

    def __call__(self, images: torch.Tensor, prompts: list[str]) -> torch.Tensor:
        """Score ``images`` [B, 3, H, W] in [0, 1] against the quoted text of ``prompts``.

        Returns:
            float32 [B] in [0, 1] on the CPU.

        Raises:
            ValueError: if the batch sizes differ or a prompt has no quoted text.
        """
        if len(prompts) != images.shape[0]:
            raise ValueError(f"got {images.shape[0]} images but {len(prompts)} prompts")
        targets = [ocr_target(prompt) for prompt in prompts]  # checked before the slow part
        texts = self.read(images)
        return torch.tensor([ocr_text_score(t, r) for t, r in zip(targets, texts, strict=True)], dtype=torch.float32)


@functools.cache
def default_ocr_reward() -> OcrReward:
    """The process-wide :class:`OcrReward` with RapidOCR (models load once, on first use)."""
    return OcrReward()


def ocr_reward(images: torch.Tensor, prompts: list[str]) -> torch.Tensor:
    """Flow-GRPO's OCR reward with RapidOCR: ``images`` [B, 3, H, W] in [0, 1] -> float32 [B] in [0, 1]."""
    return default_ocr_reward()(images, prompts)
