"""Visual text rendering (Flow-GRPO's OCR task): draw the text a prompt puts in double quotes.

Flow-GRPO (Liu et al., 2025, "Flow-GRPO: Training Flow Matching Models via Online RL") trains SD3.5-M on
about 20k text-rendering prompts, each naming the text to draw in double quotes, and rewards it with an OCR
model (:mod:`creditzoo.rewards.ocr`). Its prompt files cannot be downloaded here, so this task ships a set
of its own built from templates: every text of ``TEXTS`` in every scene of ``TEMPLATES``. The split holds
out texts: the prompts of the texts in ``HELD_OUT_TEXTS`` (in every scene) are the test prompts, so the
test measures rendering words never trained on. Pass your own files (``creditzoo train --prompts
TRAIN,TEST``, plain text, one prompt a line) to train on Flow-GRPO's set instead.

Categories (per-category evaluation): the number of words of the quoted text (``one_word``,
``two_words``, ``three_plus_words``): longer texts are harder to render.
"""

from __future__ import annotations

import torch

from creditzoo.tasks import UNIT, Metric, Task

TEMPLATES: tuple[str, ...] = (
    'A neon sign on a brick wall that says "{text}"',
    'A wooden signboard outside a cafe with "{text}" painted on it',
    'A chalkboard in a classroom with "{text}" written in white chalk',
    'A t-shirt on a hanger printed with the words "{text}"',
    'A birthday cake with "{text}" written in icing',
    'A vintage movie poster with the title "{text}"',
    'A street sign at a crossroads reading "{text}"',
    'A coffee mug on a desk with "{text}" printed on its side',
    'A book cover titled "{text}" in bold letters',
    'A sandy beach with "{text}" written in the sand',
)
"""Scenes; ``{text}`` is replaced by a text of ``TEXTS``."""

TEXTS: tuple[str, ...] = (
    "Open",
    "Hello",
    "Welcome",
    "Sale",
    "Coffee",
    "Exit",
    "Love",
    "Dream",
    "Stop",
    "Pizza",
    "Jazz",
    "Garden",
    "Hope",
    "Bakery",
    "Library",
    "Hello World",
    "Good Morning",
    "Fresh Bread",
    "Happy Birthday",
    "No Parking",
    "Best Friends",
    "Big Sale",
    "Free Wifi",
    "Green Tea",
    "City Lights",
    "Night Market",
    "Ocean Drive",
    "Stay Curious",
    "Just Do It",
    "Keep It Simple",
    "Home Sweet Home",
    "Time To Relax",
    "Made With Love",
    "Live Laugh Love",
    "Back In Five",
    "Think Big Act Small",
    "Open Every Day",
    "Coffee And Books",
    "Sun Sea Sand",
    "Hard Work Pays Off",
)
"""Texts to render, 1-4 words, Latin letters only (what the recogniser's models read reliably)."""

HELD_OUT_TEXTS: frozenset[str] = frozenset(
    {"Jazz", "Hope", "Bakery", "Free Wifi", "Night Market", "Best Friends", "Made With Love", "Sun Sea Sand"}
)
"""Texts whose prompts form the test split (3 one-word, 3 two-word, 2 longer texts)."""

CATEGORIES: tuple[str, ...] = ("one_word", "two_words", "three_plus_words")


def category_of(prompt: str) -> str:
    """Category by the number of words of the quoted text (one of ``CATEGORIES``).

    Raises:
        ValueError: if the prompt has no quoted text.
    """
    parts = prompt.split('"')
    if len(parts) < 3 or not parts[1].split():
        raise ValueError(f'an ocr prompt must put the text to render in double quotes ("..."), got {prompt!r}')
    words = len(parts[1].split())
    return CATEGORIES[min(words, 3) - 1]


def _prompts(held_out: bool) -> list[str]:
    return [
        template.format(text=text) for text in TEXTS if (text in HELD_OUT_TEXTS) == held_out for template in TEMPLATES
    ]


def train_prompts() -> list[str]:
    """The training prompts: every text not held out, in every scene (fixed order)."""
    return _prompts(held_out=False)


def test_prompts() -> list[str]:
    """The held-out prompts: every text of ``HELD_OUT_TEXTS``, in every scene (fixed order)."""
    return _prompts(held_out=True)


def score(images: torch.Tensor, prompts: list[str]) -> dict[str, torch.Tensor]:
    """Evaluation scores of ``images`` [B, 3, H, W] in [0, 1].

    Returns:
        float32 [B] each: "ocr" (the OCR reward) and "exact_text" (1 where the whole text was read, i.e. the
        reward is 1).
    """
    from creditzoo.rewards.ocr import ocr_reward  # lazy: rapidocr loads on first use

    reward = ocr_reward(images, prompts)  # [B]
    return {"ocr": reward, "exact_text": (reward == 1.0).float()}


TASK = Task(
    name="ocr",
    description='Flow-GRPO\'s text rendering: draw the "quoted" text, scored by OCR (needs --model)',
    train_prompts=train_prompts,
    test_prompts=test_prompts,
    category=category_of,
    score=score,
    metrics=(
        Metric(
            "ocr",
            "Flow-GRPO's OCR reward: 1 where OCR reads the quoted text, else 1 - edit distance / length",
            bounds=UNIT,
        ),
        Metric(
            "exact_text",
            "1 where OCR reads the whole quoted text (spaces and case aside)",
            correctness=True,
            bounds=UNIT,
        ),
    ),
    primary_metric="ocr",
    rewards={"ocr": "creditzoo.rewards.ocr:ocr_reward"},
    gym_id="creditzoo/OCR-v0",
)
