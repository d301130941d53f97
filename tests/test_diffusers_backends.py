"""SD3 and FLUX backends on tiny in-memory pipelines: against diffusers' own pipelines, LoRA export, training."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from lanes import first_fast
from tiny_diffusers import T5_MAX_LENGTH, tiny_flux_pipeline, tiny_sd3_pipeline
from tiny_model import brightness_reward

from creditzoo.algorithms import ALGORITHMS
from creditzoo.learner.checkpoint import save_checkpoint
from creditzoo.learner.config import TrainConfig
from creditzoo.learner.evaluate import sample_ode
from creditzoo.learner.grpo import GRPOLearner
from creditzoo.models import load_model
from creditzoo.models.diffusers_flux import FluxFlowModel
from creditzoo.models.diffusers_sd3 import SD3FlowModel
from creditzoo.rewards.noise import NoisyReward

PROMPTS = ["a red cat", "two dogs"]
RESOLUTION = 16


def sd3_model(seed: int = 0, dtype: torch.dtype = torch.float32) -> SD3FlowModel:
    return SD3FlowModel(tiny_sd3_pipeline(seed).to(dtype=dtype), resolution=RESOLUTION, max_sequence_length=16)


def flux_model(seed: int = 0, resolution: int = RESOLUTION, dtype: torch.dtype = torch.float32) -> FluxFlowModel:
    pipeline = tiny_flux_pipeline(seed).to(dtype=dtype)
    return FluxFlowModel(pipeline, resolution=resolution, max_sequence_length=T5_MAX_LENGTH)


def noise(model, batch: int, seed: int = 0) -> torch.Tensor:
    return torch.randn((batch, *model.sample_shape), generator=torch.Generator().manual_seed(seed))


# ------------------------------------------------------------------------------ against diffusers' pipelines


@pytest.mark.slow
def test_sd3_ode_sampling_equals_the_diffusers_pipeline_with_cfg() -> None:
    model = sd3_model()
    latents = noise(model, 2)
    ours = sample_ode(model, PROMPTS, latents, num_steps=3, guidance_scale=4.0, shift=3.0)
    pipe = model.pipeline(
        PROMPTS,
        latents=latents.clone(),
        num_inference_steps=3,
        height=RESOLUTION,
        width=RESOLUTION,
        guidance_scale=4.0,
        max_sequence_length=16,
        output_type="pt",
    ).images
    assert ours.shape == pipe.shape == (2, 3, RESOLUTION, RESOLUTION)
    torch.testing.assert_close(ours, pipe.float(), rtol=0, atol=1e-5)
    unguided = sample_ode(model, PROMPTS, latents, num_steps=3, guidance_scale=1.0, shift=3.0)
    assert (unguided - ours).abs().max() > 1e-3  # guidance is live: the comparison above can fail


@pytest.mark.parametrize("kind", ["sd3", "flux"])
def test_each_distinct_prompt_is_encoded_once(kind: str) -> None:
    model = sd3_model() if kind == "sd3" else flux_model()
    seen = []
    encode = model.pipeline.encode_prompt
    model.pipeline.encode_prompt = lambda prompt, **kw: seen.append(list(prompt)) or encode(prompt=prompt, **kw)
    batch = ["two dogs", "a red cat", "two dogs", "two dogs", "a red cat"]
    cond = model.encode_prompts(batch)
    assert seen == [["two dogs", "a red cat"]]
    for name, value in cond.items():
        assert value.shape[0] == 5
        for row, prompt in enumerate(batch):  # against each prompt encoded on its own
            torch.testing.assert_close(value[row], model._encode([prompt])[name][0], msg=f"{name} row {row}")


def test_sd3_negative_prompt_is_encoded_once() -> None:
    model = sd3_model()
    calls = []
    original = model.encode_prompts
    model.encode_prompts = lambda prompts: calls.append(list(prompts)) or original(prompts)  # type: ignore[method-assign]
    cond = model.encode_prompts(PROMPTS)
    for _ in range(3):
        model.velocity(noise(model, 2), torch.full((2,), 0.5), cond, guidance_scale=3.0)
    assert calls == [PROMPTS, [""]]


@pytest.mark.parametrize("resolution", [16, 32, 48])
def test_flux_ode_sampling_and_sigma_grid_equal_the_diffusers_pipeline(resolution: int) -> None:
    model = flux_model(resolution=resolution)
    latents = noise(model, 1)
    ours = sample_ode(model, PROMPTS[:1], latents, num_steps=3)
    pipe = model.pipeline(
        PROMPTS[:1],
        latents=latents.clone(),
        num_inference_steps=3,
        height=resolution,
        width=resolution,
        guidance_scale=3.5,
        max_sequence_length=T5_MAX_LENGTH,
        output_type="pt",
    ).images
    torch.testing.assert_close(model.sigma_grid(3), model.pipeline.scheduler.sigmas, rtol=0, atol=0)
    assert model.sample_shape == ((resolution // 2) ** 2, 4)
    assert ours.shape == pipe.shape == (1, 3, resolution, resolution)
    torch.testing.assert_close(ours, pipe.float(), rtol=0, atol=1e-5)


def test_flux_rejects_cfg_and_static_shift() -> None:
    model = flux_model()
    cond = model.encode_prompts(PROMPTS[:1])
    with pytest.raises(ValueError, match="no classifier-free guidance"):
        model.velocity(noise(model, 1), torch.ones(1), cond, guidance_scale=4.0)
    with pytest.raises(ValueError, match="resolution-dependent"):
        model.sigma_grid(4, 3.0)


def test_flux_unpack_inverts_diffusers_pack() -> None:
    from diffusers import FluxPipeline

    model = flux_model(resolution=32)
    latents = torch.randn(2, 1, 32, 32)
    packed = FluxPipeline._pack_latents(latents, 2, 1, 32, 32)
    assert packed.shape == (2, *model.sample_shape)
    torch.testing.assert_close(model.unpack(packed), latents, rtol=0, atol=0)


# ------------------------------------------------------------------------------ loading by spec


def test_sd3_spec_loads_a_saved_pipeline(tmp_path) -> None:
    model = sd3_model(seed=3)
    model.pipeline.save_pretrained(tmp_path)
    loaded = load_model(f"sd3:{tmp_path}", device=torch.device("cpu"), resolution=RESOLUTION, max_sequence_length=16)
    assert isinstance(loaded, SD3FlowModel) and loaded.sample_shape == model.sample_shape
    assert not any(p.requires_grad for p in loaded.pipeline.text_encoder.parameters())
    cond, latents, sigma = model.encode_prompts(PROMPTS), noise(model, 2), torch.full((2,), 0.6)
    expected = model.velocity(latents, sigma, cond, guidance_scale=2.0)
    got = loaded.velocity(latents, sigma, loaded.encode_prompts(PROMPTS), guidance_scale=2.0)
    torch.testing.assert_close(got, expected)
    half = load_model(f"sd3:{tmp_path}", device=torch.device("cpu"), dtype=torch.bfloat16, resolution=RESOLUTION)
    assert half.transformer.dtype == torch.bfloat16 and half.pipeline.vae.dtype == torch.bfloat16


def test_flux_spec_loads_a_saved_pipeline(tmp_path) -> None:
    model = flux_model(seed=4)
    model.pipeline.save_pretrained(tmp_path)
    loaded = load_model(f"flux:{tmp_path}", device=torch.device("cpu"), resolution=RESOLUTION, max_sequence_length=16)
    assert isinstance(loaded, FluxFlowModel)
    latents, sigma = noise(model, 1), torch.full((1,), 0.6)
    torch.testing.assert_close(
        loaded.velocity(latents, sigma, loaded.encode_prompts(PROMPTS[:1])),
        model.velocity(latents, sigma, model.encode_prompts(PROMPTS[:1])),
    )


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("sd3", "needs a path"),
        ("flux:", "needs a path"),
        ("sd3:/does/not/exist", "does not exist"),
        ("sdxl:/some/path", "unknown model"),
        ("toy:/does/not/exist.safetensors", "no toy model weights"),
        ("nomodule:thing", "unknown model"),
    ],
)
def test_bad_specs_fail_with_the_valid_forms(spec: str, message: str) -> None:
    with pytest.raises(ValueError, match=message) as error:
        load_model(spec, device=torch.device("cpu"))
    assert "\n" not in str(error.value)


def test_missing_hub_id_is_not_downloaded() -> None:
    with pytest.raises(ValueError, match="without downloading"):
        load_model("sd3:nobody/no-such-model-here", device=torch.device("cpu"))


def test_toy_spec_and_dtype_checks() -> None:
    toy = load_model("toy", device=torch.device("cpu"))
    assert toy.sample_shape == (3, 32, 32)
    with pytest.raises(ValueError, match="float32 only"):
        load_model("toy", device=torch.device("cpu"), dtype=torch.bfloat16)
    with pytest.raises(ValueError, match="unknown dtype"):
        TrainConfig(dtype="float64")


# ------------------------------------------------------------------------------ LoRA in diffusers' format

BUILDERS = {"sd3": (sd3_model, {"guidance_scale": 3.0}), "flux": (flux_model, {})}


def config_for(kind: str, **overrides) -> TrainConfig:
    values = dict(
        algo="flow_grpo",
        prompts_per_iteration=2,
        group_size=2,
        num_steps=3,
        iterations=1,
        learning_rate=1e-2,
        clip_range=0.2,
        updates_per_iteration=1,
        guidance_scale=BUILDERS[kind][1].get("guidance_scale", 1.0),
        shift=3.0 if kind == "sd3" else 1.0,
    )
    return TrainConfig(**{**values, **overrides})


def make_learner(kind: str, config: TrainConfig, model=None) -> GRPOLearner:
    model = model if model is not None else BUILDERS[kind][0]()
    reward = NoisyReward(brightness_reward, None, seed=config.seed)
    return GRPOLearner(config, model, reward, PROMPTS, torch.device("cpu"))


@pytest.mark.parametrize("kind", ["sd3", "flux"])
def test_checkpoint_loads_in_a_plain_diffusers_pipeline(kind: str, tmp_path) -> None:
    learner = make_learner(kind, config_for(kind))
    rank, alpha = (32, 64.0) if kind == "sd3" else (64, 128.0)  # the model's defaults
    assert learner.policy.peft_config["default"].r == rank and learner.policy.peft_config["default"].lora_alpha == alpha
    with torch.no_grad():  # a trained-looking adapter: B != 0
        for name, parameter in learner.policy.named_parameters():
            if "lora_B" in name:
                parameter.normal_(0.0, 0.05, generator=torch.Generator().manual_seed(len(name)))
    checkpoint = save_checkpoint(tmp_path, 1, learner.policy, {"iteration": 1})
    assert (checkpoint / "pytorch_lora_weights.safetensors").is_file()

    guidance = BUILDERS[kind][1]
    model = learner.policy.get_base_model()
    latents, sigma = noise(model, 2), torch.full((2,), 0.7)
    cond = learner.policy.encode_prompts(PROMPTS)
    with torch.no_grad():
        ours = learner.policy.velocity(latents, sigma, cond, **guidance)
    fresh = BUILDERS[kind][0]()  # same seed: the same base weights, no adapter
    with torch.no_grad():
        base = fresh.velocity(latents, sigma, cond, **guidance)
        fresh.pipeline.load_lora_weights(str(checkpoint))
        loaded = fresh.velocity(latents, sigma, cond, **guidance)
    assert (base - ours).abs().max() > 1e-3  # the adapter changes the output
    torch.testing.assert_close(loaded, ours, rtol=1e-5, atol=1e-5)


# ------------------------------------------------------------------------------ one GRPO iteration each


@pytest.mark.parametrize("kind", first_fast(["sd3", "flux"]))
@pytest.mark.parametrize("algo", first_fast(sorted(ALGORITHMS)))
def test_one_iteration_of_every_algorithm_trains_lora(kind: str, algo: str) -> None:
    learner = make_learner(kind, config_for(kind, algo=algo, lora_rank=4, lora_alpha=8.0))
    before = {n: p.detach().clone() for n, p in learner.policy.named_parameters() if p.requires_grad}
    assert before and all("lora_" in n and ".transformer." in n for n in before)
    metrics = learner.iteration(1).metrics
    assert metrics["ratio_dev_first_update"] < 1e-4
    assert metrics["loss"] is not None and torch.isfinite(torch.tensor(metrics["loss"]))
    after = dict(learner.policy.named_parameters())
    assert any(not torch.equal(before[n], after[n]) for n in before)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["sd3", "flux"])
def test_gradient_checkpointing_gives_the_same_update(kind: str) -> None:
    config = config_for(kind, lora_rank=4, seed=1)
    plain = make_learner(kind, config)
    checkpointed = make_learner(kind, dataclasses.replace(config, gradient_checkpointing=True))
    assert checkpointed.policy.get_base_model().transformer.gradient_checkpointing
    calls = {}
    for name, learner in (("plain", plain), ("checkpointed", checkpointed)):
        block = learner.policy.get_base_model().transformer.transformer_blocks[0]
        calls[name] = 0

        def counted(*args, _forward=block.forward, _name=name, **kwargs):  # recomputation skips forward hooks
            calls[_name] += 1
            return _forward(*args, **kwargs)

        block.forward = counted
    initial = {n: p.detach().clone() for n, p in checkpointed.policy.named_parameters() if p.requires_grad}
    plain.iteration(1)
    checkpointed.iteration(1)
    assert calls["checkpointed"] > calls["plain"]  # the block ran again in the backward pass
    assert any(not torch.equal(initial[n], p) for n, p in checkpointed.policy.named_parameters() if n in initial)
    for (name, a), (_, b) in zip(plain.policy.named_parameters(), checkpointed.policy.named_parameters(), strict=True):
        if a.requires_grad:
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=name)


def test_sd3_grid_defaults_to_the_schedulers_shift() -> None:
    from creditzoo.sampling import flow_sigmas

    default = make_learner("sd3", config_for("sd3", shift=None, lora_rank=2))
    assert default.shift == 3.0  # the tiny pipeline's scheduler, like SD3.5's
    torch.testing.assert_close(default.env.sigmas, flow_sigmas(3, 3.0), rtol=0, atol=0)
    explicit = make_learner("sd3", config_for("sd3", shift=1.0, lora_rank=2))
    torch.testing.assert_close(explicit.env.sigmas, flow_sigmas(3, 1.0), rtol=0, atol=0)
    flux = make_learner("flux", config_for("flux", shift=None, lora_rank=2))
    torch.testing.assert_close(flux.env.sigmas, flux.policy.sigma_grid(3), rtol=0, atol=0)


def test_gradient_checkpointing_needs_a_diffusers_model() -> None:
    from tiny_model import TinyFlowModel

    config = dataclasses.replace(config_for("flux"), gradient_checkpointing=True)
    with pytest.raises(ValueError, match="gradient checkpointing"):
        GRPOLearner(config, TinyFlowModel(), brightness_reward, PROMPTS, torch.device("cpu"))


# ------------------------------------------------------------------------------ reduced precision


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["sd3", "flux"])
def test_bf16_weights_keep_the_sampler_in_float32(kind: str) -> None:
    config = config_for(kind, lora_rank=4)
    model = BUILDERS[kind][0](dtype=torch.bfloat16)
    assert model.transformer.dtype == torch.bfloat16
    learner = make_learner(kind, config, model=model)
    result = learner.iteration(1)
    assert result.record["log_probs"].dtype == torch.float32
    assert result.metrics["ratio_dev_first_update"] < 1e-3
    cond = model.encode_prompts(PROMPTS)
    velocity = model.velocity(noise(model, 2), torch.full((2,), 0.5), cond, **BUILDERS[kind][1])
    assert velocity.dtype == torch.float32
