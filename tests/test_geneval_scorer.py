"""The programmatic GenEval scorer: strict / partial / dense scores on rendered scenes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage

from creditzoo.rewards import geneval as scorer
from creditzoo.tasks import geneval as g

ALL_PROMPTS = g.train_prompts() + g.test_prompts()


def _render(prompts: list[str], seed: int = 0) -> torch.Tensor:
    return g.render_batch(prompts, np.random.default_rng(seed))


def _scene(placements: list[tuple[str, str, int, int, int]], size: int = 32) -> torch.Tensor:
    """Hand-placed scene: (shape, colour, top, left, side) per object -> [1, 3, size, size]."""
    image = np.zeros((3, size, size), dtype=np.float32)
    for shape, colour, top, left, side in placements:
        window = image[:, top : top + side, left : left + side]
        window[:, g.shape_mask(shape, side)] = np.asarray(g.COLOURS[colour], dtype=np.float32)[:, None]
    return torch.from_numpy(image)[None]


def test_clean_renders_are_scored_correct():
    rng = np.random.default_rng(1234)
    prompts = [ALL_PROMPTS[i] for i in rng.integers(len(ALL_PROMPTS), size=1000)]
    images = g.render_batch(prompts, rng)
    scores = scorer.score_geneval(images, prompts)
    accuracy = scores.strict.mean().item()
    print(f"strict accuracy on 1000 clean renders: {accuracy:.4f}")
    assert accuracy >= 0.99
    assert torch.equal(scores.strict, (scores.partial == 1).float())
    assert (scores.dense - scores.partial).abs().max().item() < 0.05
    for values in (scores.strict, scores.partial, scores.dense):
        assert values.shape == (1000,) and values.dtype == torch.float32


def test_every_prompt_scores_correct_on_its_render():
    scores = scorer.score_geneval(_render(ALL_PROMPTS, seed=7), ALL_PROMPTS)
    assert scores.strict.mean().item() >= 0.99


# (prompt, prompt whose scene is rendered instead, expected partial score)
WRONG_CASES = [
    ("a circle", "a square", 0.0),
    ("a triangle", "a circle", 0.0),
    ("a circle and a square", "a circle and a triangle", 0.5),
    ("a square and a triangle", "a circle", 0.0),
    ("three triangles", "two triangles", 2 / 3),
    ("four circles", "two circles", 0.5),
    ("two squares", "four squares", 0.0),
    ("two squares", "three squares", 0.5),
    ("three circles", "three squares", 0.0),
    ("a red square", "a blue square", 0.5),
    ("a red square", "a red circle", 0.0),
    ("a circle left of a square", "a circle right of a square", 2 / 3),
    ("a circle above a square", "a circle below a square", 2 / 3),
    ("a triangle below a circle", "a triangle above a circle", 2 / 3),
    ("a circle left of a square", "a circle left of a triangle", 1 / 3),
    ("a red circle and a blue square", "a blue circle and a red square", 0.5),
    ("a red circle and a blue square", "a red circle and a green square", 0.75),
]


@pytest.mark.parametrize("prompt,rendered,expected", WRONG_CASES)
def test_wrong_scenes(prompt, rendered, expected):
    images = _render([rendered] * 8, seed=3)
    wrong = scorer.score_geneval(images, [prompt] * 8)
    right = scorer.score_geneval(images, [rendered] * 8)
    assert torch.all(right.strict == 1)
    assert torch.all(wrong.strict == 0)
    assert torch.allclose(wrong.partial, torch.full((8,), expected), atol=1e-6)
    assert torch.all(wrong.partial < 1)
    assert (wrong.dense - wrong.partial).abs().max().item() < 0.05


def test_every_category_has_right_and_wrong_cases():
    categories = {g.category_of(prompt) for prompt, _, _ in WRONG_CASES}
    assert categories == set(g.CATEGORIES)


def test_extra_objects_are_allowed_except_when_counting():
    images = _render(["a circle and a square"] * 4)
    assert torch.all(scorer.score_geneval(images, ["a circle"] * 4).strict == 1)
    assert torch.all(scorer.score_geneval(images, ["a square"] * 4).strict == 1)
    images = _render(["three circles"] * 4)
    assert torch.all(scorer.score_geneval(images, ["a circle"] * 4).strict == 1)
    assert torch.all(scorer.score_geneval(images, ["two circles"] * 4).strict == 0)


def test_empty_image_scores_zero():
    images = torch.zeros(len(ALL_PROMPTS), 3, 32, 32)
    scores = scorer.score_geneval(images, ALL_PROMPTS)
    for values in (scores.strict, scores.partial, scores.dense):
        assert torch.all(values == 0)


def test_hand_placed_position_follows_genevals_rule():
    # circle centred at x = 6.5, square at x = 22.5, same row: the circle is left of the square only
    image = _scene([("circle", "red", 12, 3, 7), ("square", "blue", 12, 19, 7)])
    prompts = [f"a circle {relation} a square" for relation in g.RELATIONS]
    scores = scorer.score_geneval(image.expand(4, -1, -1, -1), prompts)
    assert scores.strict.tolist() == [1.0, 0.0, 0.0, 0.0]
    assert scores.partial.tolist() == pytest.approx([1.0, 2 / 3, 2 / 3, 2 / 3])
    # GenEval's rule allows two relations at once: a 10 px diagonal offset gives
    # r = (10 - 0.1 * (6.2 + 7)) / 14.1 = 0.61 > 0.5 on both axes
    diagonal = _scene([("circle", "red", 3, 3, 7), ("square", "blue", 13, 13, 7)])
    prompts = ["a circle left of a square", "a circle above a square", "a square below a circle"]
    assert scorer.score_geneval(diagonal.expand(3, -1, -1, -1), prompts).strict.tolist() == [1.0, 1.0, 1.0]
    # a mostly horizontal offset (dx = 16, dy = 4) gives "left of" only
    shallow = _scene([("circle", "red", 10, 3, 7), ("square", "blue", 14, 19, 7)])
    assert scorer.score_geneval(shallow.expand(2, -1, -1, -1), prompts[:2]).strict.tolist() == [1.0, 0.0]


def test_partial_counting_values():
    four = [("circle", "red", 2, 2, 8), ("circle", "blue", 2, 20, 8), ("circle", "green", 20, 2, 8)]
    four.append(("circle", "yellow", 20, 20, 8))
    image = _scene(four)
    prompts = ["two circles", "three circles", "four circles", "two squares"]
    scores = scorer.score_geneval(image.expand(4, -1, -1, -1), prompts)
    assert scores.partial.tolist() == pytest.approx([0.0, 2 / 3, 1.0, 0.0])
    two = _scene(four[:2])
    assert scorer.score_geneval(two, ["four circles"]).partial.item() == pytest.approx(0.5)


def test_colour_is_per_object():
    image = _scene([("circle", "red", 12, 3, 9), ("square", "blue", 12, 19, 9)])
    prompts = ["a red circle", "a blue circle", "a blue square", "a red circle and a blue square"]
    prompts.append("a blue circle and a red square")
    scores = scorer.score_geneval(image.expand(5, -1, -1, -1), prompts)
    assert scores.strict.tolist() == [1.0, 0.0, 1.0, 1.0, 0.0]
    assert scores.partial.tolist() == pytest.approx([1.0, 0.5, 1.0, 1.0, 0.5])


def test_dense_strictly_between_for_degraded_images():
    prompts = ALL_PROMPTS[::4]
    clean = _render(prompts, seed=11).numpy()
    degraded = torch.from_numpy(0.7 * ndimage.gaussian_filter(clean, (0, 0, 1.0, 1.0)))  # blurred, dimmed
    scores = scorer.score_geneval(degraded, prompts)
    assert torch.all(scores.dense > 0) and torch.all(scores.dense < 1)
    assert scores.partial.mean() > 0.8  # the hard detector still sees most objects
    assert scores.dense.mean() < scores.partial.mean()


@pytest.mark.slow
@pytest.mark.parametrize(
    "name,grid",
    [("blur", np.linspace(0.0, 1.2, 49)), ("fade", np.linspace(0.0, 0.7, 71)), ("noise", np.linspace(0, 0.15, 31))],
)
def test_dense_moves_continuously_as_images_degrade(name, grid):
    prompts = ALL_PROMPTS[1::8]
    clean = _render(prompts, seed=5).numpy()
    noise = np.random.default_rng(0).standard_normal(clean.shape).astype(np.float32)

    def degrade(level: float) -> torch.Tensor:
        if name == "blur":
            out = ndimage.gaussian_filter(clean, (0, 0, level, level))
        elif name == "fade":
            out = clean * (1 - level)
        else:
            out = np.clip(clean + level * noise, 0, 1)
        return torch.from_numpy(out.astype(np.float32))

    scores = [scorer.score_geneval(degrade(level), prompts) for level in grid]
    dense = torch.stack([s.dense for s in scores])  # [levels, B]
    partial = torch.stack([s.partial for s in scores])  # [levels, B]
    dense_steps = dense.diff(dim=0).abs()
    assert dense_steps.max().item() < 0.12
    # the dense score moves at many more steps than the partial score, which moves in whole clauses
    assert (dense_steps > 1e-6).sum() > 3 * (partial.diff(dim=0).abs() > 1e-6).sum()
    assert dense[-1].mean() < dense[0].mean()


def test_shape_checks():
    images = _render(["a circle", "a square"])
    with pytest.raises(ValueError, match=r"\[B, 3, H, W\]"):
        scorer.score_geneval(images[0], ["a circle"])
    with pytest.raises(ValueError, match=r"\[B, 3, H, W\], got \[2, 4, 32, 32\]"):
        scorer.score_geneval(torch.zeros(2, 4, 32, 32), ["a circle", "a square"])
    with pytest.raises(ValueError, match="2 images but 1 prompts"):
        scorer.score_geneval(images, ["a circle"])
    with pytest.raises(ValueError, match="NaN"):
        scorer.score_geneval(torch.full((1, 3, 32, 32), float("nan")), ["a circle"])
    with pytest.raises(ValueError, match="not a geneval prompt"):
        scorer.score_geneval(images, ["a circle", "a dog"])
    empty = scorer.score_geneval(torch.zeros(0, 3, 32, 32), [])
    assert empty.strict.shape == (0,)


def test_other_sizes_and_dtypes():
    prompts = ["three squares", "a red circle and a blue triangle"]
    big = g.render_batch(prompts, np.random.default_rng(0), size=64)
    assert torch.all(scorer.score_geneval(big, prompts).strict == 1)
    half = _render(prompts).to(torch.bfloat16)
    assert torch.all(scorer.score_geneval(half, prompts).strict == 1)
    overshoot = _render(prompts) * 1.05 - 0.02  # slightly outside [0, 1]: clamped
    assert torch.all(scorer.score_geneval(overshoot, prompts).strict == 1)


def test_reward_registry():
    prompts = ["two circles", "a red square"]
    images = _render(["four circles", "a red square"])
    expected = scorer.score_geneval(images, prompts)
    task = g.TASK
    for name, path in task.rewards.items():
        reward = task.reward(name)
        assert reward is task.reward(path)
        values = reward(images, prompts)
        assert values.shape == (2,) and values.dtype == torch.float32
    assert torch.equal(task.reward("geneval")(images, prompts), expected.partial)
    assert torch.equal(task.reward("geneval_dense")(images, prompts), expected.dense)
    assert torch.equal(task.reward("geneval_strict")(images, prompts), expected.strict)
    assert task.reward() is task.reward("geneval_dense")  # the default, for make_vec and training alike
    with pytest.raises(ValueError, match="valid: geneval_dense, geneval, geneval_strict"):
        task.reward("clip")
    with pytest.raises(ValueError, match="no attribute"):
        task.reward("creditzoo.rewards.geneval:nope")
