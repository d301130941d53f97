"""Human-preference alignment (Flow-GRPO's PickScore task): images people prefer for a prompt.

Flow-GRPO (Liu et al., 2025, "Flow-GRPO: Training Flow Matching Models via Online RL") trains SD3.5-M on
Pick-a-Pic prompts (Kirstain et al., 2023) with PickScore as the reward (:mod:`creditzoo.rewards.pickscore`).
Those prompts cannot be downloaded here, so this task ships a set of its own built from templates: a
subject of ``SUBJECTS`` (six kinds) in a style of ``STYLES``. The split holds out subjects: the prompts of
``HELD_OUT_SUBJECTS`` (one per kind, in every style) are the test prompts. Pass your own files
(``creditzoo train --prompts TRAIN,TEST``, plain text, one prompt a line) to train on Pick-a-Pic's prompts.

Categories (per-category evaluation): the kind of subject (``CATEGORIES``).
"""

from __future__ import annotations

import torch

from creditzoo.tasks import Metric, Task

SUBJECTS: dict[str, tuple[str, ...]] = {
    "animals": (
        "a red fox curled up in fresh snow",
        "an owl perched on a mossy branch at dusk",
        "a golden retriever puppy playing in autumn leaves",
        "a hummingbird drinking from a bright flower",
        "a herd of elephants crossing a dusty savanna",
    ),
    "people": (
        "an old fisherman mending nets on a pier",
        "a young dancer mid-leap in an empty studio",
        "a chef plating a dessert in a busy kitchen",
        "a child flying a kite on a windy hill",
        "an astronaut floating inside a space station",
    ),
    "landscapes": (
        "a misty mountain valley at sunrise",
        "a desert canyon under a starry sky",
        "a waterfall in a lush green rainforest",
        "a frozen lake surrounded by pine trees",
        "rolling lavender fields at sunset",
    ),
    "architecture": (
        "a gothic cathedral with tall stained-glass windows",
        "a futuristic glass skyscraper among clouds",
        "a cozy cottage with a thatched roof",
        "a lighthouse on a rocky cliff during a storm",
        "a narrow alley in an old mediterranean town",
    ),
    "food": (
        "a stack of fluffy pancakes with berries and syrup",
        "a steaming bowl of ramen with a soft-boiled egg",
        "a rustic loaf of sourdough bread on a wooden board",
        "a colourful fruit tart in a bakery window",
        "a cup of cappuccino with latte art",
    ),
    "fantasy": (
        "a dragon sleeping on a pile of gold coins",
        "a floating island with waterfalls pouring into the sky",
        "a wizard's library lit by glowing crystals",
        "a giant tree house in an enchanted forest",
        "a mechanical whale swimming through the clouds",
    ),
}
"""Subjects by kind (the category of their prompts)."""

STYLES: tuple[str, ...] = (
    "{subject}",
    "{subject}, highly detailed photograph",
    "{subject}, oil painting",
    "{subject}, watercolor illustration",
    "{subject}, cinematic lighting, 4k",
    "{subject}, studio ghibli style",
    "{subject}, digital art, trending on artstation",
    "{subject}, pencil sketch",
)
"""Styles; ``{subject}`` is replaced by a subject."""

HELD_OUT_SUBJECTS: frozenset[str] = frozenset(subjects[-1] for subjects in SUBJECTS.values())
"""The last subject of each kind: its prompts form the test split."""

CATEGORIES: tuple[str, ...] = tuple(SUBJECTS)

_CATEGORY_OF_PROMPT: dict[str, str] = {
    style.format(subject=subject): kind
    for kind, subjects in SUBJECTS.items()
    for subject in subjects
    for style in STYLES
}


def category_of(prompt: str) -> str:
    """The kind of subject of one of this task's prompts.

    Raises:
        ValueError: for a prompt that is not one of this task's (user prompt files carry their own tags).
    """
    if prompt not in _CATEGORY_OF_PROMPT:
        raise ValueError(f"not a prompt of the pickscore task's default set: {prompt!r}")
    return _CATEGORY_OF_PROMPT[prompt]


def _prompts(held_out: bool) -> list[str]:
    return [
        style.format(subject=subject)
        for subjects in SUBJECTS.values()
        for subject in subjects
        if (subject in HELD_OUT_SUBJECTS) == held_out
        for style in STYLES
    ]


def train_prompts() -> list[str]:
    """The training prompts: every subject not held out, in every style (fixed order)."""
    return _prompts(held_out=False)


def test_prompts() -> list[str]:
    """The held-out prompts: the subjects of ``HELD_OUT_SUBJECTS`` in every style (fixed order)."""
    return _prompts(held_out=True)


def score(images: torch.Tensor, prompts: list[str]) -> dict[str, torch.Tensor]:
    """Evaluation scores of ``images`` [B, 3, H, W] in [0, 1].

    Returns:
        float32 [B]: "pickscore" (PickScore / 26); PickScore has no notion of a correct image.
    """
    from creditzoo.rewards.pickscore import pickscore_reward  # lazy: transformers and the weights load on use

    return {"pickscore": pickscore_reward(images, prompts).float().cpu()}  # [B]


TASK = Task(
    name="pickscore",
    description="Flow-GRPO's human-preference alignment, scored by PickScore (needs --model and PickScore_v1)",
    train_prompts=train_prompts,
    test_prompts=test_prompts,
    category=category_of,
    score=score,
    # PickScore is a scaled CLIP logit, not bounded by 1: no bounds, no clipping
    metrics=(Metric("pickscore", "PickScore / 26: the preference model's score of the image for its prompt"),),
    primary_metric="pickscore",
    rewards={"pickscore": "creditzoo.rewards.pickscore:pickscore_reward"},
    gym_id="creditzoo/PickScore-v0",
)
