"""The GenEval-style toy world: palette, shapes, counts, relations and the prompt grammar.

Shared by the task (:mod:`creditzoo.tasks.geneval`: prompt split, renderer) and the scorer
(:mod:`creditzoo.rewards.geneval`), so that neither imports the other. GenEval: Ghosh et al., "GenEval: An
Object-Focused Framework for Evaluating Text-to-Image Alignment", NeurIPS 2023.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

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
