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
from dataclasses import dataclass

import numpy as np
import torch

from creditzoo.tasks import Task

COLOURS: dict[str, tuple[float, float, float]] = {
    "red": (0.95, 0.10, 0.10),
    "green": (0.10, 0.80, 0.10),
    "blue": (0.10, 0.20, 1.00),
    "yellow": (0.95, 0.90, 0.10),
    "purple": (0.70, 0.10, 0.90),
    "cyan": (0.00, 0.90, 0.90),
}
"""Palette, RGB in [0, 1]; every pair is at least 0.6 apart (Euclidean) and at least 0.8 from black."""

BACKGROUND: tuple[float, float, float] = (0.0, 0.0, 0.0)
"""The plain background colour (black)."""

SHAPES: tuple[str, ...] = ("circle", "square", "triangle")
CATEGORIES: tuple[str, ...] = ("single_object", "two_object", "counting", "colors", "position", "color_attr")
RELATIONS: tuple[str, ...] = ("left of", "right of", "above", "below")

NUMBER_WORDS: dict[int, str] = {1: "one", 2: "two", 3: "three", 4: "four"}
"""Count words; a count of 1 reads "a" except in the counting category ("one circle")."""

COUNTING_COUNTS: tuple[int, ...] = (2, 3, 4)
"""Counts that the counting prompts use (GenEval's)."""

PLURALS: dict[str, str] = {shape: shape + "s" for shape in SHAPES}

VOCABULARY: tuple[str, ...] = (
    "a",
    "and",
    "of",
    "left",
    "right",
    "above",
    "below",
    *NUMBER_WORDS.values(),
    *COLOURS,
    *SHAPES,
    *PLURALS.values(),
)
"""Every word that can appear in a prompt, in a fixed order (for word-level text encoders)."""

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


@dataclass(frozen=True)
class ObjectSpec:
    """One object clause of a prompt.

    Attributes:
        shape: one of ``SHAPES``.
        colour: one of ``COLOURS``, or None when the prompt does not name a colour.
        count: how many instances, 1-4 (more than 1 only in the counting category).
    """

    shape: str
    colour: str | None = None
    count: int = 1

    def __post_init__(self) -> None:
        if self.shape not in SHAPES:
            raise ValueError(f"unknown shape {self.shape!r}; valid shapes: {', '.join(SHAPES)}")
        if self.colour is not None and self.colour not in COLOURS:
            raise ValueError(f"unknown colour {self.colour!r}; valid colours: {', '.join(COLOURS)}")
        if self.count not in NUMBER_WORDS:
            raise ValueError(f"count must be one of {sorted(NUMBER_WORDS)}, got {self.count}")

    def phrase(self, *, counting: bool = False) -> str:
        """Noun phrase, e.g. "a red circle", "three triangles" or (``counting=True``) "one circle"."""
        determiner = NUMBER_WORDS[self.count] if (counting or self.count > 1) else "a"
        noun = PLURALS[self.shape] if self.count > 1 else self.shape
        words = [determiner] + ([self.colour] if self.colour is not None else []) + [noun]
        return " ".join(words)


@dataclass(frozen=True)
class PromptSpec:
    """A structured prompt; ``text`` renders it and :func:`parse_prompt` inverts that.

    Attributes:
        category: one of ``CATEGORIES``.
        objects: the object clauses, one (single_object, counting, colors) or two (the others).
        relation: one of ``RELATIONS`` for the position category, else None. The relation reads
            "objects[0] <relation> objects[1]".
    """

    category: str
    objects: tuple[ObjectSpec, ...]
    relation: str | None = None

    def __post_init__(self) -> None:
        if self.category not in CATEGORIES:
            raise ValueError(f"unknown category {self.category!r}; valid categories: {', '.join(CATEGORIES)}")
        two = self.category in ("two_object", "position", "color_attr")
        if len(self.objects) != (2 if two else 1):
            raise ValueError(f"{self.category} prompts take {2 if two else 1} objects, got {len(self.objects)}")
        if (self.relation is not None) != (self.category == "position"):
            raise ValueError(f"relation must be set exactly for position prompts, got {self.relation!r}")
        if self.relation is not None and self.relation not in RELATIONS:
            raise ValueError(f"unknown relation {self.relation!r}; valid relations: {', '.join(RELATIONS)}")
        coloured = self.category in ("colors", "color_attr")
        for obj in self.objects:
            if (obj.colour is not None) != coloured:
                raise ValueError(f"{self.category} objects must {'' if coloured else 'not '}name a colour")
            if obj.count != 1 and self.category != "counting":
                raise ValueError(f"only counting prompts take counts other than 1, got {obj.count}")
        if two and self.objects[0].shape == self.objects[1].shape:
            raise ValueError(f"the two objects of a {self.category} prompt must differ in shape")
        if self.category == "color_attr" and self.objects[0].colour == self.objects[1].colour:
            raise ValueError("the two objects of a color_attr prompt must differ in colour")

    @property
    def text(self) -> str:
        """The prompt text, e.g. "a circle left of a square"."""
        counting = self.category == "counting"
        phrases = [obj.phrase(counting=counting) for obj in self.objects]
        if len(phrases) == 1:
            return phrases[0]
        joiner = self.relation if self.relation is not None else "and"
        return f"{phrases[0]} {joiner} {phrases[1]}"


def _parse_object(words: list[str], start: int) -> tuple[ObjectSpec, int, bool]:
    """Parse one noun phrase at ``words[start:]``; returns (object, next index, had a number word)."""
    if start >= len(words):
        raise ValueError("expected a noun phrase, found the end of the prompt")
    determiner = words[start]
    counts = {word: count for count, word in NUMBER_WORDS.items()}
    if determiner != "a" and determiner not in counts:
        raise ValueError(f"expected 'a' or a number word, found {determiner!r}")
    count = 1 if determiner == "a" else counts[determiner]
    index = start + 1
    colour = None
    if index < len(words) and words[index] in COLOURS:
        colour = words[index]
        index += 1
    nouns = {PLURALS[shape] if count > 1 else shape: shape for shape in SHAPES}
    if index >= len(words) or words[index] not in nouns:
        found = words[index] if index < len(words) else "the end of the prompt"
        raise ValueError(f"expected one of {', '.join(nouns)}, found {found!r}")
    return ObjectSpec(nouns[words[index]], colour, count), index + 1, determiner != "a"


@functools.lru_cache(maxsize=4096)
def parse_prompt(text: str) -> PromptSpec:
    """Parse a prompt produced by :attr:`PromptSpec.text` (cached).

    Raises:
        ValueError: if ``text`` is not a prompt of this task, saying what was expected.
    """
    words = text.split(" ")
    try:
        first, index, numbered = _parse_object(words, 0)
        if index == len(words):
            if numbered:
                spec = PromptSpec("counting", (first,))
            else:
                spec = PromptSpec("colors" if first.colour is not None else "single_object", (first,))
        else:
            relation = None
            for candidate in RELATIONS:
                length = len(candidate.split(" "))
                if " ".join(words[index : index + length]) == candidate:
                    relation, index = candidate, index + length
                    break
            if relation is None:
                if words[index] != "and":
                    raise ValueError(f"expected 'and' or a relation ({', '.join(RELATIONS)}), found {words[index]!r}")
                index += 1
            second, index, _ = _parse_object(words, index)
            if index != len(words):
                raise ValueError(f"unexpected words after the second object: {' '.join(words[index:])!r}")
            if relation is not None:
                category = "position"
            else:
                category = "color_attr" if first.colour is not None else "two_object"
            spec = PromptSpec(category, (first, second), relation)
    except ValueError as error:
        raise ValueError(f"not a geneval prompt: {text!r} ({error})") from error
    if spec.text != text:
        raise ValueError(f"not a geneval prompt: {text!r} (the canonical form is {spec.text!r})")
    return spec


def category_of(prompt: str) -> str:
    """Category (one of ``CATEGORIES``) of a prompt."""
    return parse_prompt(prompt).category


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
        {"strict_accuracy", "partial_score", "dense_score", "extra_objects"}, each float32 [B]; see
        :mod:`creditzoo.rewards.geneval` for the definitions (extra_objects: more objects than the prompt names).
    """
    from creditzoo.rewards.geneval import score_geneval  # lazy: keeps scipy out of task listing

    scores = score_geneval(images, prompts)
    return {
        "strict_accuracy": scores.strict,
        "partial_score": scores.partial,
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
    rewards={
        "geneval": "creditzoo.rewards.geneval:partial_reward",
        "geneval_dense": "creditzoo.rewards.geneval:dense_reward",
        "geneval_strict": "creditzoo.rewards.geneval:strict_reward",
    },
    load_model="creditzoo.models.toy:load_geneval_model",
    # Measured on this toy model (README, "Measured numbers"): with the paper's lr 3e-4 and clip range 1e-4 a
    # 10-minute run does not move the test score; 3e-3 / 1e-3 does, 1e-2 collapses the reward in 3 iterations.
    # The dense reward gives TP-GRPO non-zero increments (partial: ~75% of increments are exactly zero).
    train_defaults={
        "reward": "geneval_dense",
        "learning_rate": 3e-3,
        "clip_range": 1e-3,
        "iterations": 40,
        "eval_every": 10,
        "eval_steps": 20,
    },
)
