"""The embedded GenEval task: prompts, split, parser and renderer."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from creditzoo.tasks import Task, get_task
from creditzoo.tasks import geneval as g


def test_split_is_deterministic_and_disjoint():
    train, test = g.train_prompts(), g.test_prompts()
    assert train == g.train_prompts() and test == g.test_prompts()
    assert len(set(train)) == len(train) and len(set(test)) == len(test)
    assert not set(train) & set(test)
    assert 40 <= len(test) <= 120
    assert len(train) > len(test)


def test_every_category_in_both_splits():
    for split in (g.train_prompts(), g.test_prompts()):
        assert {g.category_of(p) for p in split} == set(g.CATEGORIES)


def test_held_out_combinations_never_in_train():
    train, test = g.train_prompts(), g.test_prompts()
    for prompt in train:
        assert not g.is_held_out(g.parse_prompt(prompt)), prompt
    for prompt in test:
        assert g.is_held_out(g.parse_prompt(prompt)), prompt
    # the same property read off the text itself
    for colour, shape in g.HELD_OUT_COLOUR_SHAPES:
        assert not any(f"{colour} {shape}" in p for p in train)
        assert any(f"{colour} {shape}" in p for p in test)
    for count, shape in g.HELD_OUT_COUNTS:
        assert f"{g.NUMBER_WORDS[count]} {g.PLURALS[shape]}" in test
        assert f"{g.NUMBER_WORDS[count]} {g.PLURALS[shape]}" not in train
    pair = g.HELD_OUT_SHAPE_PAIR
    for prompt in train:
        spec = g.parse_prompt(prompt)
        if spec.category in ("two_object", "position"):
            assert {obj.shape for obj in spec.objects} != pair


def test_parse_prompt_inverts_text():
    for prompt in g.train_prompts() + g.test_prompts():
        spec = g.parse_prompt(prompt)
        assert spec.text == prompt
        assert g.parse_prompt(spec.text) == spec
    assert g.parse_prompt("one circle") == g.PromptSpec("counting", (g.ObjectSpec("circle", count=1),))


@pytest.mark.parametrize(
    "text,category",
    [
        ("a circle", "single_object"),
        ("a circle and a square", "two_object"),
        ("three triangles", "counting"),
        ("a red square", "colors"),
        ("a circle left of a square", "position"),
        ("a triangle below a square", "position"),
        ("a red circle and a blue square", "color_attr"),
    ],
)
def test_examples(text, category):
    assert g.category_of(text) == category
    assert g.parse_prompt(text).text == text


@pytest.mark.parametrize(
    "text",
    [
        "",
        "a dog",
        "a circle and a circle",
        "two circle",
        "a circles",
        "a red red circle",
        "a circle  and a square",
        "a circle left a square",
        "a red circle and a square",
        "a red circle and a red square",
        "a circle and a square and a triangle",
        "two red circles",
        "A circle",
    ],
)
def test_unknown_prompt_raises(text):
    with pytest.raises(ValueError, match="not a geneval prompt"):
        g.parse_prompt(text)


def test_spec_validation_lists_choices():
    with pytest.raises(ValueError, match="valid shapes: circle, square, triangle"):
        g.ObjectSpec("hexagon")
    with pytest.raises(ValueError, match="valid colours"):
        g.ObjectSpec("circle", "pink")
    with pytest.raises(ValueError, match="valid categories"):
        g.PromptSpec("attribute", (g.ObjectSpec("circle"),))
    with pytest.raises(ValueError, match="relation"):
        g.PromptSpec("two_object", (g.ObjectSpec("circle"), g.ObjectSpec("square")), "above")


def test_vocabulary_covers_all_prompt_words():
    assert len(set(g.VOCABULARY)) == len(g.VOCABULARY)
    words = {word for p in g.train_prompts() + g.test_prompts() for word in p.split(" ")}
    assert words <= set(g.VOCABULARY)


def test_palette_is_well_separated():
    palette = np.asarray(list(g.COLOURS.values()))
    distances = np.linalg.norm(palette[:, None] - palette[None], axis=-1)
    assert distances[~np.eye(len(palette), dtype=bool)].min() >= 0.6
    assert np.linalg.norm(palette - np.asarray(g.BACKGROUND), axis=-1).min() >= 0.8
    assert len(g.COLOURS) >= 5 and len(g.SHAPES) >= 3


def test_render_shapes_range_and_determinism():
    prompts = g.train_prompts()[:20] + g.test_prompts()[:20]
    images = g.render_batch(prompts, np.random.default_rng(0))
    assert images.shape == (40, 3, 32, 32) and images.dtype == torch.float32
    assert images.min() >= 0 and images.max() <= 1
    assert torch.equal(images, g.render_batch(prompts, np.random.default_rng(0)))
    assert not torch.equal(images, g.render_batch(prompts, np.random.default_rng(1)))
    assert g.render_batch([], np.random.default_rng(0)).shape == (0, 3, 32, 32)
    big = g.render_scene(g.parse_prompt("four squares"), np.random.default_rng(0), size=64)
    assert big.shape == (3, 64, 64) and big.dtype == np.float32


def test_render_draws_exactly_the_named_objects():
    rng = np.random.default_rng(0)
    background = np.asarray(g.BACKGROUND, dtype=np.float32)[:, None, None]
    for prompt in ["a red square", "a blue circle and a yellow triangle", "four triangles"]:
        spec = g.parse_prompt(prompt)
        image = g.render_scene(spec, rng)
        foreground = np.abs(image - background).sum(axis=0) > 0
        expected = sum(g.shape_mask(obj.shape, 7).sum() for obj in spec.objects for _ in range(obj.count))
        assert foreground.sum() >= expected  # at least the smallest sizes
        for obj in spec.objects:
            if obj.colour is not None:
                colour = np.asarray(g.COLOURS[obj.colour], dtype=np.float32)[:, None]
                assert np.isclose(image.reshape(3, -1), colour).all(axis=0).any()
        assert not foreground[0].any() and not foreground[-1].any()  # border stays background
        assert not foreground[:, 0].any() and not foreground[:, -1].any()


def test_task_entry():
    task = get_task("geneval")
    assert isinstance(task, Task) and task is g.TASK
    assert task.default_reward == "geneval_dense"  # what training uses, so make_vec scores the same
    assert task.train_prompts() == g.train_prompts()
    assert task.category("three circles") == "counting"
    prompts = ["a circle", "a red square"]
    scores = task.score(g.render_batch(prompts, np.random.default_rng(0)), prompts)
    assert set(scores) == {"strict_accuracy", "partial_score", "dense_score", "extra_objects"}
    assert all(value.shape == (2,) for value in scores.values())
