import functools
import random

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw, ImageFont

from creditzoo.rewards._images import to_uint8_images
from creditzoo.rewards.ocr import (
    OcrReward,
    RapidOcrRecogniser,
    edit_distance,
    ocr_target,
    ocr_text_score,
)
from creditzoo.tasks import get_task
from creditzoo.tasks.ocr import CATEGORIES, HELD_OUT_TEXTS, TEMPLATES, TEXTS, category_of
from creditzoo.tasks.ocr import test_prompts as ocr_test_prompts
from creditzoo.tasks.ocr import train_prompts as ocr_train_prompts


def slow_distance(a, b):
    """Levenshtein distance by the textbook recursion (memoised), independent of the module's DP."""

    @functools.cache
    def d(i, j):
        if i == 0 or j == 0:
            return i + j
        return min(d(i - 1, j) + 1, d(i, j - 1) + 1, d(i - 1, j - 1) + (a[i - 1] != b[j - 1]))

    return d(len(a), len(b))


def test_edit_distance_matches_the_recursion():
    rng = random.Random(0)
    for _ in range(200):
        a = "".join(rng.choice("abc") for _ in range(rng.randint(0, 7)))
        b = "".join(rng.choice("abc") for _ in range(rng.randint(0, 7)))
        assert edit_distance(a, b) == slow_distance(a, b), (a, b)


@pytest.mark.parametrize(
    ("target", "read", "expected"),
    [
        ("Hello", "hello", 1.0),
        ("Hello World", "HELLOWORLD", 1.0),  # spaces removed, lowercased on both sides
        ("hello", "big sign: hello world!", 1.0),  # contained: extra text is not penalised
        ("abcd", "abxd", 0.75),
        ("abcd", "abc", 0.75),
        ("abcd", "", 0.0),  # nothing read
        ("ab", "zzzzzzzzzz", 0.0),  # the distance is capped at the target's length
        ("Coffee Shop", "cofee shop", 1 - 1 / 10),
    ],
)
def test_flow_grpo_formula_on_known_cases(target, read, expected):
    assert ocr_text_score(target, read) == pytest.approx(expected)


def test_formula_against_an_independent_computation():
    rng = random.Random(1)
    for _ in range(100):
        target = "".join(rng.choice("ab c") for _ in range(rng.randint(1, 8))).strip() or "a"
        read = "".join(rng.choice("ab cD") for _ in range(rng.randint(0, 10)))
        t, r = target.replace(" ", "").lower(), read.replace(" ", "").lower()
        expected = 1.0 if t in r else 1 - min(slow_distance(r, t), len(t)) / len(t)
        assert ocr_text_score(target, read) == pytest.approx(expected)


def test_target_is_the_first_quoted_text():
    assert ocr_target('A sign that says "Hello World" and "Other"') == "helloworld"
    assert ocr_target('"OPEN" neon') == "open"
    for bad in ["no quotes here", 'one "quote only', 'blank "   " text']:
        with pytest.raises(ValueError, match="ocr prompt"):
            ocr_target(bad)


def test_reward_uses_the_recogniser_and_checks_its_input():
    read = iter(["hello", "help", ""])
    reward = OcrReward(lambda image: next(read))
    prompts = ['a sign "Hello"', 'a sign "Hello"', 'a sign "Hello"']
    scores = reward(torch.zeros(3, 3, 8, 8), prompts)
    assert scores.dtype == torch.float32
    torch.testing.assert_close(scores, torch.tensor([1.0, 1 - 2 / 5, 0.0]))
    with pytest.raises(ValueError, match="2 images but 1 prompts"):
        reward(torch.zeros(2, 3, 8, 8), ['"a"'])
    with pytest.raises(ValueError, match="double quotes"):
        OcrReward(lambda image: "x")(torch.zeros(1, 3, 8, 8), ["unquoted"])


def test_uint8_conversion_rounds_and_puts_channels_last():
    images = torch.zeros(1, 3, 2, 2)
    images[0, 0] = 1.0  # red
    images[0, 2, 0, 0] = 0.5
    pixels = to_uint8_images(images)
    assert pixels.shape == (1, 2, 2, 3) and pixels.dtype == np.uint8
    assert pixels[0, 0, 0].tolist() == [255, 0, 128] and pixels[0, 1, 1].tolist() == [255, 0, 0]


# ------------------------------------------------------------------------- RapidOCR on rendered text


def render_text(text, size=(320, 96)):
    """Black text on white, drawn with PIL's bundled font; float [3, H, W] in [0, 1]."""
    image = Image.new("RGB", size, "white")
    if text:
        font = ImageFont.load_default(size=40)
        ImageDraw.Draw(image).text((16, 24), text, fill="black", font=font)
    return torch.from_numpy(np.asarray(image, dtype=np.float32) / 255).permute(2, 0, 1)


@pytest.fixture(scope="module")
def rapid_reward():
    return OcrReward(RapidOcrRecogniser())


@pytest.mark.slow
def test_rapidocr_reads_rendered_text(rapid_reward):
    images = torch.stack([render_text("HELLO"), render_text("WORLD"), render_text("HELP"), render_text("")])
    prompts = ['A neon sign that says "Hello"'] * 4
    read = rapid_reward.read(images)
    scores = rapid_reward(images, prompts)
    assert scores[0] == 1.0, read  # the right text
    assert scores[1] < 1.0 and scores[2] < 1.0, read  # wrong texts score less
    assert scores[2] > scores[1], read  # "help" is closer to "hello" than "world" is
    assert read[3] == "" and scores[3] == 0.0  # a blank image reads nothing and scores 0
    # the scores are the formula applied to what was read
    expected = [ocr_text_score("hello", text) for text in read]
    torch.testing.assert_close(scores, torch.tensor(expected, dtype=torch.float32))


# ----------------------------------------------------------------------------------------- the task


def test_default_prompt_set_is_fixed_and_split_by_text():
    train, test = ocr_train_prompts(), ocr_test_prompts()
    assert len(train) == (len(TEXTS) - len(HELD_OUT_TEXTS)) * len(TEMPLATES)
    assert len(test) == len(HELD_OUT_TEXTS) * len(TEMPLATES)
    assert train == ocr_train_prompts() and test == ocr_test_prompts()  # deterministic
    train_texts = {p.split('"')[1] for p in train}
    test_texts = {p.split('"')[1] for p in test}
    assert test_texts == HELD_OUT_TEXTS and not train_texts & test_texts
    assert len(set(train)) == len(train) and len(set(test)) == len(test)
    for prompt in train + test:
        ocr_target(prompt)  # every prompt has its text in double quotes
    assert {category_of(p) for p in test} == set(CATEGORIES)  # every category is evaluated


def test_categories_count_words():
    assert category_of('a "Stop" sign') == "one_word"
    assert category_of('a "Free Wifi" sign') == "two_words"
    assert category_of('a "Think Big Act Small" sign') == "three_plus_words"
    with pytest.raises(ValueError, match="double quotes"):
        category_of("no text")


def test_task_is_registered_with_its_reward_and_scores():
    task = get_task("ocr")
    assert task.rewards == {"ocr": "creditzoo.rewards.ocr:ocr_reward"}
    assert task.default_reward == "ocr"
    assert task.train_prompts() == ocr_train_prompts()


@pytest.mark.slow
def test_task_score_on_rendered_text():
    task = get_task("ocr")
    images = torch.stack([render_text("OPEN"), render_text("")])
    scores = task.score(images, ['A neon sign on a brick wall that says "Open"'] * 2)
    torch.testing.assert_close(scores["ocr"], torch.tensor([1.0, 0.0]))
    torch.testing.assert_close(scores["exact_text"], torch.tensor([1.0, 0.0]))
    assert [metric.name for metric in task.metrics] == ["ocr", "exact_text"] and task.primary_metric == "ocr"


@pytest.mark.slow
def test_ocr_environment_scores_its_final_images_with_the_ocr_reward():
    import gymnasium
    from tiny_model import TinyFlowModel

    from creditzoo.envs import DenoisingConfig
    from creditzoo.rewards.ocr import default_ocr_reward, ocr_reward
    from creditzoo.sampling import ode_step

    env = gymnasium.make_vec(
        "creditzoo/OCR-v0",
        num_envs=2,
        arrays="torch",
        model=TinyFlowModel(),
        config=DenoisingConfig(num_steps=2, completion=None),
    )
    prompts = ocr_test_prompts()[:2]
    obs, _ = env.reset(seed=0, options={"prompts": prompts})
    for j in range(2):
        obs, reward, terminated, _, info = env.step(
            ode_step(env.velocity(), obs["latent"], env.sigmas[j], env.sigmas[j + 1])
        )
    assert terminated.all() and reward.shape == (2,)
    assert env.unwrapped.reward is ocr_reward  # the task's default reward, not a stand-in that also reads 0
    torch.testing.assert_close(reward, default_ocr_reward()(info["images"], prompts))
