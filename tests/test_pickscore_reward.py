import json
import math
import string

import pytest
import torch

from creditzoo.rewards.pickscore import PICKSCORE_SCALE, PickScoreReward
from creditzoo.tasks import get_task
from creditzoo.tasks.pickscore import CATEGORIES, HELD_OUT_SUBJECTS, STYLES, SUBJECTS, category_of
from creditzoo.tasks.pickscore import test_prompts as pickscore_test_prompts
from creditzoo.tasks.pickscore import train_prompts as pickscore_train_prompts

transformers = pytest.importorskip("transformers")

MEAN, STD = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)


def build_tiny_clip(folder):
    """A random-weight CLIP with a character-level BPE tokenizer written to ``folder`` (nothing downloaded)."""
    symbols = list(string.ascii_lowercase + string.digits + ",.'-!")
    tokens = ["<|startoftext|>", "<|endoftext|>"] + symbols + [s + "</w>" for s in symbols]
    (folder / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(tokens)}))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    tokenizer = transformers.CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"))
    image_processor = transformers.CLIPImageProcessor(
        size={"shortest_edge": 32},
        crop_size={"height": 32, "width": 32},
        image_mean=list(MEAN),
        image_std=list(STD),
    )
    transformers.CLIPProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(folder)
    torch.manual_seed(0)
    config = transformers.CLIPConfig(
        text_config={
            "vocab_size": len(tokens),
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "max_position_embeddings": 77,
            "eos_token_id": 1,
            "bos_token_id": 0,
            "pad_token_id": 1,
        },
        vision_config={
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "image_size": 32,
            "patch_size": 8,
        },
        projection_dim=16,
        logit_scale_init_value=math.log(40.0),
    )
    transformers.CLIPModel(config).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def clip_folder(tmp_path_factory):
    return build_tiny_clip(tmp_path_factory.mktemp("tiny_clip"))


def images(count, seed=0):
    """Images on the uint8 grid (so the conversion to uint8 is exact), [B, 3, 32, 32]."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (count, 3, 32, 32), generator=generator).float() / 255


def reference_scores(folder, pixels, prompts):
    """PickScore from the spec, by hand: normalise the pixels, run both towers, scaled cosine / 26."""
    model = transformers.CLIPModel.from_pretrained(folder).eval()
    tokenizer = transformers.CLIPTokenizer.from_pretrained(folder)
    normalised = (pixels - torch.tensor(MEAN)[:, None, None]) / torch.tensor(STD)[:, None, None]  # [B, 3, 32, 32]
    tokens = tokenizer(prompts, padding=True, return_tensors="pt")
    with torch.no_grad():
        image = model.visual_projection(model.vision_model(pixel_values=normalised).pooler_output)  # [B, D]
        text = model.text_projection(
            model.text_model(input_ids=tokens["input_ids"], attention_mask=tokens["attention_mask"]).pooler_output
        )  # [B, D]
        cosine = torch.nn.functional.cosine_similarity(image, text, dim=-1)  # [B]
    assert model.logit_scale.exp().item() == pytest.approx(40.0)
    return model.logit_scale.exp() * cosine / PICKSCORE_SCALE


PROMPTS = ["a red fox in snow", "an owl at dusk", "a lighthouse, oil painting", "ramen with an egg, 4k"]


def test_pickscore_matches_an_independent_computation(clip_folder):
    reward = PickScoreReward.from_pretrained(clip_folder)
    pixels = images(4)
    scores = reward(pixels, PROMPTS)
    assert scores.shape == (4,) and scores.dtype == torch.float32
    torch.testing.assert_close(scores, reference_scores(clip_folder, pixels, PROMPTS), rtol=1e-5, atol=1e-5)


def test_pickscore_pairs_each_image_with_its_own_prompt(clip_folder):
    reward = PickScoreReward.from_pretrained(clip_folder)
    pixels = images(4, seed=1)
    forward = reward(pixels, PROMPTS)
    backward = reward(pixels.flip(0), PROMPTS[::-1])
    torch.testing.assert_close(backward, forward.flip(0), rtol=1e-5, atol=1e-6)
    swapped = reward(pixels, PROMPTS[::-1])
    assert not torch.allclose(swapped, forward)  # the pairing matters: the check above can fail


def test_batching_does_not_change_scores_and_weights_run_in_float32(clip_folder):
    pixels = images(5, seed=2)
    prompts = PROMPTS + ["a dragon on gold"]
    whole = PickScoreReward.from_pretrained(clip_folder)(pixels, prompts)
    chunked = PickScoreReward.from_pretrained(clip_folder, batch_size=2)(pixels, prompts)
    torch.testing.assert_close(chunked, whole, rtol=1e-5, atol=1e-6)
    half = transformers.CLIPModel.from_pretrained(clip_folder).to(torch.bfloat16)
    processor = transformers.CLIPProcessor.from_pretrained(clip_folder)
    reward = PickScoreReward(half, processor)
    assert all(p.dtype == torch.float32 for p in reward.model.parameters())


def test_images_of_another_size_go_through_the_processor(clip_folder):
    reward = PickScoreReward.from_pretrained(clip_folder)
    big = torch.rand(2, 3, 64, 48, generator=torch.Generator().manual_seed(3))
    scores = reward(big, PROMPTS[:2])
    assert scores.shape == (2,) and torch.isfinite(scores).all()
    with pytest.raises(ValueError, match="2 images but 1 prompts"):
        reward(big, PROMPTS[:1])


def test_missing_weights_fail_in_one_line(tmp_path):
    with pytest.raises(ValueError) as error:
        PickScoreReward.from_pretrained(tmp_path / "absent")
    assert "cannot load the PickScore model" in str(error.value) and "\n" not in str(error.value)
    assert "CREDITZOO_PICKSCORE_MODEL" in str(error.value)


def test_default_reward_reads_the_model_folder_from_the_environment(clip_folder, monkeypatch):
    from creditzoo.rewards import pickscore

    monkeypatch.setenv("CREDITZOO_PICKSCORE_MODEL", str(clip_folder))
    monkeypatch.delenv("CREDITZOO_PICKSCORE_PROCESSOR", raising=False)
    pickscore.default_pickscore_reward.cache_clear()
    try:
        pixels = images(2, seed=4)
        scores = get_task("pickscore").score(pixels, PROMPTS[:2])
        torch.testing.assert_close(
            scores["pickscore"], reference_scores(clip_folder, pixels, PROMPTS[:2]), rtol=1e-5, atol=1e-5
        )
        assert set(scores) == {"pickscore"}  # no placeholder metric: PickScore has no notion of a correct image
        assert [metric.name for metric in get_task("pickscore").metrics] == ["pickscore"]
    finally:
        pickscore.default_pickscore_reward.cache_clear()


# ----------------------------------------------------------------------------------------- the task


def test_default_prompt_set_is_fixed_and_split_by_subject():
    train, test = pickscore_train_prompts(), pickscore_test_prompts()
    subjects = sum(len(s) for s in SUBJECTS.values())
    assert len(train) == (subjects - len(HELD_OUT_SUBJECTS)) * len(STYLES)
    assert len(test) == len(HELD_OUT_SUBJECTS) * len(STYLES)
    assert train == pickscore_train_prompts() and not set(train) & set(test)
    for subject in HELD_OUT_SUBJECTS:
        assert not any(p.startswith(subject) for p in train)
    assert {category_of(p) for p in test} == set(CATEGORIES)
    with pytest.raises(ValueError, match="not a prompt of the pickscore task"):
        category_of("something else")
    task = get_task("pickscore")
    assert task.default_reward == "pickscore" and task.test_prompts() == test
