"""The embedded GenEval-style task: coloured shapes on a black 32x32 canvas.

GenEval (Ghosh et al., "GenEval: An Object-Focused Framework for Evaluating Text-to-Image Alignment",
NeurIPS 2023) scores prompts in six categories with an object detector. This module rebuilds those six
categories in a world small enough to score exactly and render on a CPU:

==============  ==================================  ==========================================
category        example                             what a correct image holds
==============  ==================================  ==========================================
single_object   "a circle"                          a circle
two_object      "a circle and a square"             a circle and a square
counting        "three triangles"                   exactly three triangles
colors          "a red square"                      a red square
position        "a circle left of a square"         a circle, a square, the relation holding
color_attr      "a red circle and a blue square"    a red circle and a blue square
==============  ==================================  ==========================================

Shapes are axis-aligned circles, squares and upward triangles in one of six saturated colours on a black
background (``BACKGROUND``). :func:`render_scene` draws exactly the named objects (colours left unnamed
are drawn at random), non-overlapping with a gap of at least 2 px, each 7-11 px across at ``size=32``.

The split holds out attribute *combinations*, as GenEval's evaluation does for models trained on other
prompts: the (colour, shape) pairs in ``HELD_OUT_COLOUR_SHAPES`` (for colors and color_attr), the
shape pair ``HELD_OUT_SHAPE_PAIR`` (for two_object and position), the (count, shape) pairs in
``HELD_OUT_COUNTS`` (for counting) and the shapes in ``HELD_OUT_SINGLE`` (for single_object) never appear
in a training prompt. Every test prompt contains at least one held-out combination; every other prompt
is a training prompt.
"""

from __future__ import annotations

import functools
import itertools

import numpy as np
import torch

from creditzoo.tasks import UNIT, Metric, Task
from creditzoo.worlds.geneval import (  # noqa: F401  (re-exported: the task's vocabulary)
    BACKGROUND,
    CATEGORIES,
    COLOURS,
    COUNTING_COUNTS,
    NUMBER_WORDS,
    PLURALS,
    RELATIONS,
    SHAPES,
    VOCABULARY,
    ObjectSpec,
    PromptSpec,
    category_of,
    parse_prompt,
)

HELD_OUT_SINGLE: frozenset[str] = frozenset({"triangle"})
HELD_OUT_SHAPE_PAIR: frozenset[str] = frozenset({"circle", "triangle"})
HELD_OUT_COUNTS: frozenset[tuple[int, str]] = frozenset({(2, "triangle"), (3, "circle"), (4, "square")})
HELD_OUT_COLOUR_SHAPES: frozenset[tuple[str, str]] = frozenset(
    {("red", "triangle"), ("green", "circle"), ("blue", "square")}
)

OBJECT_SIZES: tuple[int, int] = (7, 11)
"""Inclusive range of object sizes (bounding-box side, px) at ``size=32``; scaled with the canvas."""
OBJECT_GAP = 2
"""Minimum gap (px) between the bounding boxes of two objects (objects also keep 1 px from the border)."""
POSITION_MIN_SEPARATION = 10
"""Minimum bbox-centre distance (px at ``size=32``) along the axis of a position relation."""
POSITION_MAX_ORTHOGONAL = 0.4
"""Maximum ratio of the off-axis to the on-axis centre offset in a position scene."""


def _all_specs() -> list[PromptSpec]:
    """Every prompt of the task, grouped by category in ``CATEGORIES`` order."""
    specs = [PromptSpec("single_object", (ObjectSpec(shape),)) for shape in SHAPES]
    pairs = list(itertools.permutations(SHAPES, 2))
    specs += [PromptSpec("two_object", (ObjectSpec(a), ObjectSpec(b))) for a, b in pairs]
    specs += [PromptSpec("counting", (ObjectSpec(shape, count=n),)) for n in COUNTING_COUNTS for shape in SHAPES]
    specs += [PromptSpec("colors", (ObjectSpec(shape, colour),)) for colour in COLOURS for shape in SHAPES]
    specs += [
        PromptSpec("position", (ObjectSpec(a), ObjectSpec(b)), relation) for a, b in pairs for relation in RELATIONS
    ]
    specs += [
        PromptSpec("color_attr", (ObjectSpec(a, ca), ObjectSpec(b, cb)))
        for a, b in pairs
        for ca, cb in itertools.permutations(COLOURS, 2)
    ]
    return specs


def is_held_out(spec: PromptSpec) -> bool:
    """Whether a prompt contains a held-out attribute combination (and so belongs to the test split)."""
    if spec.category == "single_object":
        return spec.objects[0].shape in HELD_OUT_SINGLE
    if spec.category in ("two_object", "position"):
        return {obj.shape for obj in spec.objects} == HELD_OUT_SHAPE_PAIR
    if spec.category == "counting":
        return (spec.objects[0].count, spec.objects[0].shape) in HELD_OUT_COUNTS
    return any((obj.colour, obj.shape) in HELD_OUT_COLOUR_SHAPES for obj in spec.objects)


def train_prompts() -> list[str]:
    """Return the training prompts (fixed order; no held-out combination appears in any of them)."""
    return [spec.text for spec in _all_specs() if not is_held_out(spec)]


def test_prompts() -> list[str]:
    """Return the held-out evaluation prompts (fixed order; each contains a held-out combination)."""
    return [spec.text for spec in _all_specs() if is_held_out(spec)]


# --------------------------------------------------------------------------------------------- rendering


@functools.cache
def shape_mask(shape: str, height: int, width: int | None = None) -> np.ndarray:
    """Binary mask of a shape filling a ``height x width`` box (the scorer's templates use it too).

    A pixel is inside when its centre is: the inscribed ellipse (circle); the whole box (square); an
    upward triangle with its apex on the top row and its base on the bottom row (triangle).

    Returns:
        bool [height, width] (read-only).
    """
    width = height if width is None else width
    if shape not in SHAPES:
        raise ValueError(f"unknown shape {shape!r}; valid shapes: {', '.join(SHAPES)}")
    y = (np.arange(height) + 0.5)[:, None]  # [h, 1]
    x = (np.arange(width) + 0.5)[None, :]  # [1, w]
    if shape == "square":
        mask = np.ones((height, width), dtype=bool)
    elif shape == "circle":
        mask = ((y - height / 2) / (height / 2)) ** 2 + ((x - width / 2) / (width / 2)) ** 2 <= 1.0
    else:
        half_width = (np.arange(height)[:, None] + 1) / height * (width / 2)  # [h, 1]
        mask = np.abs(x - width / 2) <= half_width
    mask.setflags(write=False)
    return mask


def _object_size_range(size: int) -> tuple[int, int]:
    low, high = OBJECT_SIZES
    return max(3, round(low * size / 32)), max(3, round(high * size / 32))


def _valid_corners(
    corners: np.ndarray, side: int, boxes: list[tuple[int, int, int]], relation: str | None, size: int
) -> np.ndarray:
    """Which candidate top-left corners keep ``OBJECT_GAP`` from ``boxes`` (and satisfy ``relation``).

    Args:
        corners: int [N, 2] candidate (top, left) corners of a ``side x side`` box.
        side: the candidate box's side.
        boxes: already placed boxes (top, left, side); the relation is checked against ``boxes[0]``.
        relation: relation of ``boxes[0]`` to the candidate, or None.
        size: canvas side (scales the relation margin).

    Returns:
        bool [N].
    """
    top, left = corners[:, 0], corners[:, 1]  # [N], [N]
    valid = np.ones(len(corners), dtype=bool)
    for other_top, other_left, other_side in boxes:
        apart_y = (top >= other_top + other_side + OBJECT_GAP) | (other_top >= top + side + OBJECT_GAP)
        apart_x = (left >= other_left + other_side + OBJECT_GAP) | (other_left >= left + side + OBJECT_GAP)
        valid &= apart_y | apart_x
    if relation is not None and boxes:
        first_top, first_left, first_side = boxes[0]
        dy = (first_top + first_side / 2) - (top + side / 2)  # [N], first object minus candidate
        dx = (first_left + first_side / 2) - (left + side / 2)  # [N]
        along, across = {
            "left of": (-dx, dy),
            "right of": (dx, dy),
            "above": (-dy, dx),
            "below": (dy, dx),
        }[relation]
        valid &= (along >= POSITION_MIN_SEPARATION * size / 32) & (np.abs(across) <= POSITION_MAX_ORTHOGONAL * along)
    return valid


def _place(
    sides: list[int], relation: str | None, rng: np.random.Generator, size: int
) -> list[tuple[int, int, int]] | None:
    """Sample non-overlapping boxes (top, left, side) by rejection; None when no candidate fits."""
    boxes: list[tuple[int, int, int]] = []
    for side in sides:
        corners = rng.integers(1, size - side, size=(64, 2))  # keep one background pixel at the border
        valid = _valid_corners(corners, side, boxes, relation, size)
        if not valid.any():
            return None
        top, left = corners[int(np.argmax(valid))].tolist()
        boxes.append((top, left, side))
    return boxes


def render_scene(spec: PromptSpec, rng: np.random.Generator, size: int = 32) -> np.ndarray:
    """Draw a random scene that satisfies ``spec``: exactly the named objects on the background.

    Args:
        spec: the prompt.
        rng: source of all randomness (sizes, places, unnamed colours).
        size: canvas side in pixels (object sizes scale with it).

    Returns:
        float32 [3, size, size] in [0, 1].
    """
    names = list(COLOURS)
    instances: list[tuple[str, str]] = []  # (shape, colour) per object to draw, in prompt order
    for obj in spec.objects:
        for _ in range(obj.count):
            colour = obj.colour if obj.colour is not None else names[int(rng.integers(len(names)))]
            instances.append((obj.shape, colour))
    low, high = _object_size_range(size)
    boxes = None
    for attempt in range(100):
        top_size = max(low, high - attempt // 5)  # shrink the largest size if placement keeps failing
        sides = [int(s) for s in rng.integers(low, top_size + 1, size=len(instances))]
        boxes = _place(sides, spec.relation, rng, size)
        if boxes is not None:
            break
    if boxes is None:
        raise RuntimeError(f"could not place the objects of {spec.text!r} on a {size}x{size} canvas")
    image = np.empty((3, size, size), dtype=np.float32)
    image[:] = np.asarray(BACKGROUND, dtype=np.float32)[:, None, None]
    for (shape, colour), (top, left, side) in zip(instances, boxes, strict=True):
        mask = shape_mask(shape, side)
        window = image[:, top : top + side, left : left + side]  # view, [3, side, side]
        window[:, mask] = np.asarray(COLOURS[colour], dtype=np.float32)[:, None]
    return image


def render_batch(prompts: list[str], rng: np.random.Generator, size: int = 32) -> torch.Tensor:
    """Render one random scene per prompt.

    Returns:
        float32 [B, 3, size, size] in [0, 1].
    """
    images = np.zeros((len(prompts), 3, size, size), dtype=np.float32)
    for index, prompt in enumerate(prompts):
        images[index] = render_scene(parse_prompt(prompt), rng, size)
    return torch.from_numpy(images)


def score(images: torch.Tensor, prompts: list[str]) -> dict[str, torch.Tensor]:
    """Score ``images`` [B, 3, H, W] for ``prompts``.

    Returns:
        {"partial_score", "strict_accuracy", "dense_score", "extra_objects"}, each float32 [B]; see
        :mod:`creditzoo.rewards.geneval` for the definitions (extra_objects: more objects than the prompt names).
        The task's metrics are the first two and extra_objects.
    """
    from creditzoo.rewards.geneval import score_geneval  # lazy: keeps scipy out of task listing

    scores = score_geneval(images, prompts)
    return {
        "partial_score": scores.partial,
        "strict_accuracy": scores.strict,
        "dense_score": scores.dense,
        "extra_objects": scores.extra_objects,
    }


TASK = Task(
    name="geneval",
    description="GenEval's six categories with coloured shapes on a 32x32 canvas, scored exactly",
    train_prompts=train_prompts,
    test_prompts=test_prompts,
    category=category_of,
    score=score,
    metrics=(
        Metric(
            "partial_score",
            "mean over the prompt's clauses of each clause's score (Flow-GRPO's GenEval reward)",
            bounds=UNIT,
        ),
        Metric("strict_accuracy", "1 where every clause holds (GenEval's correctness)", correctness=True, bounds=UNIT),
        Metric(
            "extra_objects",
            "1 where the image holds more objects than its prompt names",
            mean="extra_object_rate",
            label="extra-object rate",
            higher_is_better=False,
            bounds=UNIT,
        ),
    ),
    primary_metric="partial_score",
    # The first reward is the default, for gymnasium.make_vec and training alike: the dense score gives TP-GRPO
    # non-zero increments (with the partial score ~75% of increments are exactly zero).
    rewards={
        "geneval_dense": "creditzoo.rewards.geneval:dense_reward",
        "geneval": "creditzoo.rewards.geneval:partial_reward",
        "geneval_strict": "creditzoo.rewards.geneval:strict_reward",
    },
    default_model="toy",
    gym_id="creditzoo/GenEval-v0",
    render_scenes="creditzoo.tasks.geneval:render_batch",
    vocabulary="creditzoo.worlds.geneval:VOCABULARY",
    # Measured on this toy model (README, "Measured numbers"): with the paper's lr 3e-4 and clip range 1e-4 a
    # 10-minute run does not move the test score; 3e-3 / 1e-3 does, 1e-2 collapses the reward in 3 iterations.
    train_defaults={
        "learning_rate": 3e-3,
        "clip_range": 1e-3,
        "iterations": 40,
        "eval_every": 10,
        "eval_steps": 20,
    },
)
