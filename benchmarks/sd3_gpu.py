"""One GRPO iteration on an SD3.5-Medium-sized transformer (random bf16 weights) against diffusers' pipeline.

The transformer and the VAE are built from SD3.5-Medium's architecture (diffusers configs of
``stabilityai/stable-diffusion-3.5-medium``) with random weights; the text encoders stay tiny (their outputs are
padded to the real widths), so the numbers are the transformer's, the VAE's and the sampler's, not T5-XXL's.
Nothing is downloaded.

Measured, for each group size: seconds per phase of one iteration (sampling, completions, reward, update) and
peak GPU memory; and the throughput of plain sampling through the environment (Flow-GRPO SDE, CFG 4.5, T steps,
no completions) against ``StableDiffusion3Pipeline.__call__`` for the same number of steps on the same model
(decoded images, as the environment decodes for its reward), as seconds per transformer call.

Usage (GPU): ``PYTHONPATH=tests python benchmarks/sd3_gpu.py --group-sizes 8 24``.
Smoke test on a CPU (tiny sizes, no meaningful timings): ``PYTHONPATH=tests python benchmarks/sd3_gpu.py --tiny``.
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import torch

from creditzoo.learner.config import TrainConfig
from creditzoo.learner.grpo import GRPOLearner
from creditzoo.models.diffusers_sd3 import SD3FlowModel
from creditzoo.rewards.noise import NoisyReward
from creditzoo.shapes import EpisodeOptions

SD35_MEDIUM_TRANSFORMER = dict(
    sample_size=128,
    patch_size=2,
    in_channels=16,
    num_layers=24,
    attention_head_dim=64,
    num_attention_heads=24,
    joint_attention_dim=4096,
    caption_projection_dim=1536,
    pooled_projection_dim=2048,
    out_channels=16,
    pos_embed_max_size=384,
    dual_attention_layers=tuple(range(13)),
    qk_norm="rms_norm",
)
SD3_VAE = dict(
    in_channels=3,
    out_channels=3,
    down_block_types=("DownEncoderBlock2D",) * 4,
    up_block_types=("UpDecoderBlock2D",) * 4,
    block_out_channels=(128, 256, 512, 512),
    layers_per_block=2,
    latent_channels=16,
    norm_num_groups=32,
    sample_size=1024,
    scaling_factor=1.5305,
    shift_factor=0.0609,
    use_quant_conv=False,
    use_post_quant_conv=False,
)
PROMPTS = ["a red cat on a sofa", "a sign that says hello", "two dogs in the snow", "a blue house"]


def mean_red(images: torch.Tensor, prompts: list[str]) -> torch.Tensor:
    """A cheap stand-in reward (the reward model is not what is measured here)."""
    return images[:, 0].mean(dim=(1, 2))


def build_pipeline(tiny: bool, dtype: torch.dtype, device: torch.device, layers: int = 24):
    from diffusers import (
        AutoencoderKL,
        FlowMatchEulerDiscreteScheduler,
        SD3Transformer2DModel,
        StableDiffusion3Pipeline,
    )
    from tiny_diffusers import clip_encoder, clip_tokenizer, t5_encoder, t5_tokenizer, tiny_sd3_pipeline

    if tiny:
        return tiny_sd3_pipeline(0).to(device=device, dtype=dtype)
    torch.manual_seed(0)
    with torch.device(device):
        sizes = {**SD35_MEDIUM_TRANSFORMER, "num_layers": layers}
        sizes["dual_attention_layers"] = tuple(i for i in sizes["dual_attention_layers"] if i < layers)
        transformer = SD3Transformer2DModel(**sizes).to(dtype)
        vae = AutoencoderKL(**SD3_VAE).to(dtype)
    encoders = [clip_encoder(True, 1), clip_encoder(True, 2)]
    for encoder in encoders:  # pooled projections must sum to 2048
        encoder.text_projection = torch.nn.Linear(encoder.config.hidden_size, 1024, bias=False)
    pipeline = StableDiffusion3Pipeline(
        transformer=transformer,
        scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0),
        vae=vae,
        text_encoder=encoders[0],
        tokenizer=clip_tokenizer(),
        text_encoder_2=encoders[1],
        tokenizer_2=clip_tokenizer(),
        text_encoder_3=t5_encoder(4096, 3),
        tokenizer_3=t5_tokenizer(),
    )
    return pipeline.to(device=device, dtype=dtype)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def pipeline_seconds_per_call(model: SD3FlowModel, batch: int, steps: int, device: torch.device) -> float:
    """Seconds per transformer call of diffusers' own loop (CFG: each call has 2 x batch rows)."""
    side = model.resolution
    kwargs = dict(num_inference_steps=steps, guidance_scale=4.5, height=side, width=side, output_type="pt")
    kwargs["max_sequence_length"] = model.max_sequence_length
    model.pipeline([PROMPTS[0]] * batch, **kwargs)  # warm-up
    synchronize(device)
    started = time.perf_counter()
    model.pipeline([PROMPTS[0]] * batch, **kwargs)
    synchronize(device)
    return (time.perf_counter() - started) / steps


def env_seconds_per_call(learner: GRPOLearner, steps: int, device: torch.device) -> float:
    """Seconds per transformer call of the environment's sampling (no completions, SDE in the window)."""
    prompts = [PROMPTS[0]] * learner.env.num_envs
    group_ids = torch.zeros(len(prompts), dtype=torch.int64)
    config = learner.config
    for _ in range(2):  # warm-up, then measured
        synchronize(device)
        started = time.perf_counter()
        options = EpisodeOptions(seed=0, sde_kind=config.sde_kind, noise_level=config.resolved_noise_level)
        rollout = learner.shape.collect(learner.env, prompts, group_ids, options)
        synchronize(device)
    del rollout
    return (time.perf_counter() - started) / steps  # includes the final decode and reward, as the pipeline's


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--group-sizes", type=int, nargs="+", default=[8, 24])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--resolution", type=int, default=512)
    parser.add_argument("--algo", default="tp_grpo_strict")
    parser.add_argument("--tiny", action="store_true", help="tiny pipeline on the CPU: checks the script runs")
    parser.add_argument("--gradient-checkpointing", action="store_true")
    parser.add_argument("--layers", type=int, default=24, help="transformer blocks (24: SD3.5-Medium)")
    parser.add_argument("--cpu", action="store_true", help="run the full-width model on the CPU (wiring check)")
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() and not (args.tiny or args.cpu) else "cpu")
    dtype = torch.float32 if args.tiny else torch.bfloat16
    resolution, steps = (16, 3) if args.tiny else (args.resolution, args.steps)
    group_sizes = [2] if args.tiny else args.group_sizes
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "CPU"
    print(f"device: {name}, torch {torch.__version__}, dtype {dtype}, {resolution}px, T={steps}, {args.layers} blocks")

    def fresh_model() -> SD3FlowModel:  # peft injects LoRA in place: every learner gets its own model
        pipeline = build_pipeline(args.tiny, dtype, device, args.layers)
        return SD3FlowModel(pipeline, resolution=resolution, max_sequence_length=16)

    reward = NoisyReward(mean_red, None, seed=0)
    for group in group_sizes:
        config = TrainConfig(
            algo=args.algo,
            prompts_per_iteration=1,
            group_size=group,
            num_steps=steps,
            sde_kind="cps",
            guidance_scale=4.5,
            beta=1e-4,
            updates_per_iteration=1,
            gradient_checkpointing=args.gradient_checkpointing,
        )
        learner = GRPOLearner(config, fresh_model(), reward, PROMPTS, device)
        learner.iteration(1)  # warm-up
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        metrics = learner.iteration(2).metrics
        peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else float("nan")
        del learner
        # plain sampling: Flow-GRPO credit needs no completions, so the environment makes one call per step
        plain_config = TrainConfig(
            algo="flow_grpo", prompts_per_iteration=1, group_size=group, num_steps=steps, guidance_scale=4.5
        )
        plain = GRPOLearner(plain_config, fresh_model(), reward, PROMPTS, device)
        ours = env_seconds_per_call(plain, steps, device)
        theirs = pipeline_seconds_per_call(plain.policy.get_base_model(), group, steps, device)  # same LoRA'd weights
        del plain
        line = {
            "group_size": group,
            "seconds": metrics["seconds"],
            "peak_memory_gib": round(peak, 2),
            "env_seconds_per_transformer_call": round(ours, 5),
            "pipeline_seconds_per_transformer_call": round(theirs, 5),
            "env_throughput_vs_pipeline": round(theirs / ours, 3),
        }
        print(json.dumps(line), flush=True)


if __name__ == "__main__":
    main()
