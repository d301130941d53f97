"""The embedded toy flow model: shapes, tokenizer, guidance, LoRA targets, pretraining, shipped weights."""

import dataclasses

import pytest
import torch
from torch import nn

from creditzoo.models.base import FlowModel
from creditzoo.models.toy import (
    DEFAULT_WEIGHTS,
    LORA_TARGET_MODULES,
    ToyFlowModel,
    ToyModelConfig,
    load_geneval_model,
    load_toy_model,
    save_toy_model,
)
from creditzoo.pretrain import PretrainConfig, pretrain
from creditzoo.tasks import geneval
from creditzoo.tasks.geneval import VOCABULARY

TINY = ToyModelConfig(
    vocabulary=VOCABULARY, channels=(8, 16, 16), text_dim=16, text_layers=1, heads=2, emb_dim=16, groups=4
)


@pytest.fixture(scope="module")
def model() -> ToyFlowModel:
    torch.manual_seed(0)
    tiny = ToyFlowModel(TINY).eval()
    with torch.no_grad():  # the output layer starts at zero; give it weights so outputs are informative
        for param in tiny.parameters():
            param.add_(0.05 * torch.randn_like(param))
    return tiny


def test_config_validation() -> None:
    with pytest.raises(ValueError, match="duplicate"):
        ToyModelConfig(vocabulary=("a", "a"))
    with pytest.raises(ValueError, match="heads"):
        dataclasses.replace(TINY, heads=3)
    with pytest.raises(ValueError, match="multiple of 8"):
        dataclasses.replace(TINY, image_size=20)
    with pytest.raises(ValueError, match="single lower-case|special"):
        ToyModelConfig(vocabulary=("a", "<pad>"))
    assert ToyModelConfig.from_json(TINY.to_json()) == TINY


def test_is_a_flow_model(model: ToyFlowModel) -> None:
    assert isinstance(model, FlowModel)
    assert model.sample_shape == (3, 32, 32)


def test_tokenizer_pad_and_null(model: ToyFlowModel) -> None:
    cond = model.encode_prompts(["a red circle and a blue square", ""])
    ids, mask = cond["input_ids"], cond["attention_mask"]
    assert ids.shape == mask.shape == (2, TINY.max_tokens)
    assert ids.dtype == torch.long and mask.dtype == torch.bool
    assert mask[0].sum() == 7 and mask[1].sum() == 1  # the null prompt is one real token, never all padding
    assert (ids[~mask] == 0).all()
    with pytest.raises(ValueError, match="vocabulary"):
        model.encode_prompts(["a purple elephant"])
    with pytest.raises(ValueError, match="max_tokens"):
        model.encode_prompts(["a " * (TINY.max_tokens + 1)])


def test_every_task_prompt_tokenizes(model: ToyFlowModel) -> None:
    cond = model.encode_prompts(geneval.train_prompts() + geneval.test_prompts())
    assert cond["attention_mask"].any(dim=1).all()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_velocity_shapes_and_dtypes(model: ToyFlowModel, dtype: torch.dtype) -> None:
    tiny = model if dtype == torch.float32 else ToyFlowModel(TINY).to(dtype).eval()
    x = torch.randn(3, 3, 32, 32, dtype=dtype)
    cond = tiny.encode_prompts(["a circle", "two squares", "a triangle above a circle"])
    for scale in (1.0, 3.0):
        v = tiny.velocity(x, torch.tensor([1.0, 0.5, 0.01]), cond, guidance_scale=scale)
        assert v.shape == x.shape and v.dtype == dtype
        assert torch.isfinite(v).all()
    images = tiny.decode(x)
    assert images.shape == (3, 3, 32, 32) and images.dtype == torch.float32
    assert images.min() >= 0 and images.max() <= 1
    with pytest.raises(ValueError, match="sigma"):
        tiny.velocity(x, torch.ones(2), cond)
    with pytest.raises(ValueError, match="latents"):
        tiny.velocity(torch.randn(3, 3, 16, 16), torch.ones(3), cond)


def test_guidance_is_one_batched_cfg(model: ToyFlowModel) -> None:
    x = torch.randn(2, 3, 32, 32)
    sigma = torch.tensor([0.7, 0.3])
    cond = model.encode_prompts(["a red circle", "three triangles"])
    with torch.no_grad():
        v_cond = model.velocity(x, sigma, cond)
        v_uncond = model.velocity(x, sigma, model.null_conditioning(2))
        v_guided = model.velocity(x, sigma, cond, guidance_scale=2.5)
        v_zero = model.velocity(x, sigma, cond, guidance_scale=0.0)
    assert not torch.allclose(v_cond, v_uncond)
    torch.testing.assert_close(v_zero, v_uncond, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(v_guided, v_uncond + 2.5 * (v_cond - v_uncond), atol=1e-5, rtol=1e-4)


def test_samples_do_not_interact(model: ToyFlowModel) -> None:
    x = torch.randn(4, 3, 32, 32)
    sigma = torch.rand(4)
    cond = model.encode_prompts(["a circle", "a square", "two circles", "a green square"])
    with torch.no_grad():
        whole = model.velocity(x, sigma, cond, guidance_scale=2.0)
        single = model.velocity(x[1:2], sigma[1:2], {k: v[1:2] for k, v in cond.items()}, guidance_scale=2.0)
    torch.testing.assert_close(whole[1:2], single, atol=1e-5, rtol=1e-4)


def test_text_features_cache_gives_the_same_velocity(model: ToyFlowModel) -> None:
    x, sigma = torch.randn(4, 3, 32, 32), torch.rand(4)
    cond = model.encode_prompts(["a circle", "a square", "two circles", "a green square"])
    with torch.no_grad():
        cached = model.with_text_features(cond)
        plain = model.velocity(x, sigma, cond)
        # the same rows in the same batch: the same operations on the same numbers, so exactly equal
        assert torch.equal(model.velocity(x, sigma, cached), plain)
        # the cache is really what velocity reads: spoiling it changes the result
        spoiled = {**cached, "text_tokens": torch.zeros_like(cached["text_tokens"])}
        assert not torch.allclose(model.velocity(x, sigma, spoiled), plain)
        # guidance drops the cached keys (the null prompt has none) and encodes both halves itself
        assert torch.equal(
            model.velocity(x, sigma, cached, guidance_scale=2.0), model.velocity(x, sigma, cond, guidance_scale=2.0)
        )


def test_environment_reuses_text_features_only_without_gradient(model: ToyFlowModel) -> None:
    from creditzoo.envs import DenoisingConfig, DenoisingEnv

    prompts = ["a circle", "a square", "two circles", "a green square"]
    noise = torch.randn(4, 3, 32, 32)
    env = DenoisingEnv(model, None, num_envs=4, config=DenoisingConfig(num_steps=3, completion=None, max_batch=3))
    env.reset(options={"prompts": prompts, "noise": noise})
    assert set(env.cond) == {"input_ids", "attention_mask"}  # the learner's update encodes the text with gradient
    with torch.no_grad():
        reference = model.velocity(noise, env.sigmas[0].expand(4), env.cond)
    # the environment's chunks (3 + 1 rows) gather text features encoded at reset over 4 rows: a row's features do
    # not depend on its batch on the CPUs measured (bit for bit), but allow float32 rounding of a differently
    # blocked matrix product elsewhere (1e-6 relative to velocities of order 1)
    torch.testing.assert_close(env.velocity(), reference, rtol=1e-6, atol=1e-6)


def test_lora_targets_cover_the_adaptable_layers(model: ToyFlowModel) -> None:
    peft = pytest.importorskip("peft")
    names = {name for name, module in model.named_modules() if isinstance(module, (nn.Linear, nn.Conv2d))}
    targeted = {n for n in names if n.split(".")[-1] in LORA_TARGET_MODULES}
    assert names - targeted == {"conv_out"}
    for name, module in model.named_modules():
        if name.split(".")[-1] in LORA_TARGET_MODULES:
            assert isinstance(module, (nn.Linear, nn.Conv2d)), name
    base = ToyFlowModel(TINY).eval()
    base.load_state_dict(model.state_dict())
    lora = peft.get_peft_model(base, peft.LoraConfig(r=4, lora_alpha=4, target_modules=LORA_TARGET_MODULES))
    trainable = [n for n, p in lora.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    x, sigma = torch.randn(2, 3, 32, 32), torch.tensor([0.9, 0.2])
    cond = lora.encode_prompts(["a circle", "a blue square"])
    with torch.no_grad():
        torch.testing.assert_close(lora.velocity(x, sigma, cond), model.velocity(x, sigma, cond))


def test_save_load_roundtrip(model: ToyFlowModel, tmp_path) -> None:
    path = tmp_path / "toy.safetensors"
    save_toy_model(model, path, metadata={"note": "test"})
    loaded = load_toy_model(path)
    assert loaded.config == model.config and not loaded.training
    for (name, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items(), strict=True):
        assert torch.equal(a, b), name
    with pytest.raises(FileNotFoundError):
        load_toy_model(tmp_path / "missing.safetensors")


@pytest.mark.slow
def test_pretraining_smoke_loss_falls_and_is_deterministic() -> None:
    config = PretrainConfig(steps=20, batch_size=8, lr=3e-3, warmup_steps=2, log_every=5, seed=3)
    steps_seen = []
    model, stats = pretrain(config, model_config=TINY, progress=lambda step, total, loss: steps_seen.append(step))
    assert steps_seen == list(range(1, 21)) and stats.steps == 20
    losses = [loss for _, loss in stats.loss_curve]
    assert all(torch.isfinite(torch.tensor(losses)))
    assert losses[-1] < losses[0]
    assert not model.training
    again, _ = pretrain(dataclasses.replace(config, steps=4), model_config=TINY)
    first, _ = pretrain(dataclasses.replace(config, steps=4), model_config=TINY)
    for (name, a), (_, b) in zip(again.state_dict().items(), first.state_dict().items(), strict=True):
        assert torch.equal(a, b), name
    init = ToyFlowModel(TINY)
    assert any(
        not torch.equal(a, b) for a, b in zip(init.state_dict().values(), model.state_dict().values(), strict=True)
    )


def test_pretrain_config_validation() -> None:
    with pytest.raises(ValueError, match="pretrain"):
        PretrainConfig(env="nope")
    with pytest.raises(ValueError, match="prompt_dropout"):
        PretrainConfig(prompt_dropout=1.0)
    with pytest.raises(ValueError, match="prompt_sampling"):
        PretrainConfig(prompt_sampling="zipf")


def test_shipped_weights_load() -> None:
    assert DEFAULT_WEIGHTS.is_file(), "run `creditzoo pretrain --env geneval` to produce the shipped weights"
    assert DEFAULT_WEIGHTS.stat().st_size <= 10 * 2**20
    shipped = load_geneval_model()
    assert isinstance(shipped, ToyFlowModel) and not shipped.training
    assert shipped.config.vocabulary == VOCABULARY
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        v = shipped.velocity(x, torch.ones(2), shipped.encode_prompts(["a circle", "two squares"]), guidance_scale=2)
    assert torch.isfinite(v).all()
