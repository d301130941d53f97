"""Log-probabilities with bf16 / fp16 weights against float32, on the tiny SD3 and FLUX pipelines of tests/.

For each backend and reduced dtype: the base weights are the float32 ones cast down (same seed). One rollout is
sampled with the float32 model; its window steps are then re-scored (Flow-GRPO SDE log-prob, float32 sampler
math) by both models, each with its own prompt encoding. Reported: the log-prob difference (mean and max over
samples and steps; log-probs are per-dimension means, in nats) and exp of it, the policy ratio one would see
if sampling and training ran in different dtypes. Then one GRPO iteration per dtype: the deviation of the PPO
ratio from 1 at the first update, where sampling and training use the same weights (should be float error).

Usage: ``PYTHONPATH=tests python benchmarks/dtype_logprob.py``.
"""

from __future__ import annotations

import argparse
import dataclasses
import platform

import torch
from tiny_diffusers import T5_MAX_LENGTH, tiny_flux_pipeline, tiny_sd3_pipeline
from tiny_model import brightness_reward

from creditzoo.learner.config import TrainConfig
from creditzoo.learner.grpo import GRPOLearner
from creditzoo.models.diffusers_flux import FluxFlowModel
from creditzoo.models.diffusers_sd3 import SD3FlowModel
from creditzoo.rewards.noise import NoisyReward

PROMPTS = ["a red cat", "two dogs", "a blue house", "three green apples"]


def build(kind: str, dtype: torch.dtype, resolution: int):
    if kind == "sd3":
        return SD3FlowModel(tiny_sd3_pipeline(0).to(dtype=dtype), resolution=resolution, max_sequence_length=16)
    pipeline = tiny_flux_pipeline(0).to(dtype=dtype)
    return FluxFlowModel(pipeline, resolution=resolution, max_sequence_length=T5_MAX_LENGTH)


def learner_for(kind: str, dtype: torch.dtype, config: TrainConfig, resolution: int) -> GRPOLearner:
    reward = NoisyReward(brightness_reward, None, seed=config.seed)
    return GRPOLearner(config, build(kind, dtype, resolution), reward, PROMPTS, torch.device("cpu"))


def rescore(learner: GRPOLearner, states: torch.Tensor, prompts: list[str]) -> torch.Tensor:
    """Log-probs [B, K] of the recorded transitions under ``learner``'s policy."""
    cond = learner.policy.encode_prompts(prompts)
    window, out = learner.env.window, []
    with torch.no_grad():
        for k in range(window.size):
            j = window.start + k
            sigma = learner.env.sigmas[j].expand(states.shape[0])
            step = learner._policy_step(learner.policy, states[:, k], states[:, k + 1], sigma, cond, j)
            out.append(step.log_prob)
    return torch.stack(out, dim=1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--resolution", type=int, default=32)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--group-size", type=int, default=4)
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"machine: {platform.processor() or platform.machine()}, torch {torch.__version__}, 1 thread, CPU")
    print(
        "| backend | dtype | mean abs d log-prob | max abs d log-prob | max abs (ratio - 1) mixed dtypes "
        "| ratio dev at 1st update, same dtype | float32 same-dtype ratio dev |"
    )
    print("|---|---|---|---|---|---|---|")
    for kind in ("sd3", "flux"):
        config = TrainConfig(
            algo="flow_grpo",
            prompts_per_iteration=2,
            group_size=args.group_size,
            num_steps=args.steps,
            iterations=1,
            updates_per_iteration=1,
            guidance_scale=4.5 if kind == "sd3" else 1.0,
            shift=3.0 if kind == "sd3" else 1.0,
            lora_rank=4,
            clip_range=0.2,
        )
        full = learner_for(kind, torch.float32, config, args.resolution)
        prompts, group_ids = full.draw_prompts(1)
        rollout = full.collect(prompts, group_ids, 1)
        reference = rescore(full, rollout.states, prompts)
        assert torch.allclose(reference, rollout.log_probs, atol=1e-5), "re-scoring must reproduce the rollout"
        full_dev = full.iteration(1).metrics["ratio_dev_first_update"]
        for dtype in (torch.bfloat16, torch.float16):
            reduced = learner_for(kind, dtype, dataclasses.replace(config), args.resolution)
            diff = rescore(reduced, rollout.states, prompts) - reference  # [B, K]
            ratio_dev = (diff.exp() - 1).abs().max()
            same_dev = reduced.iteration(1).metrics["ratio_dev_first_update"]
            print(
                f"| {kind} | {str(dtype).removeprefix('torch.')} | {diff.abs().mean():.3e} | {diff.abs().max():.3e} "
                f"| {ratio_dev:.3e} | {same_dev:.3e} | {full_dev:.3e} |"
            )


if __name__ == "__main__":
    main()
