"""One GRPO iteration of every rollout shape side by side: chains (flow_grpo, incremental, tp_grpo_strict with
ode, ode:2, x0 completions), anchor-branch (tempflow, g2rpo) and tree (branch_grpo, splits at window steps 0, 2, 4
so that its 2^3 = 8 leaves fill a group of 8).

Every configuration samples the same prompts from the same noise (same seed) with the shipped toy model and
the geneval reward. Configurations are run round-robin (after one warm-up iteration each) so that machine
drift hits them alike; the median over repeats is reported. Work is counted in per-sample model evaluations:
one image through the model once; with classifier-free guidance that is two; a backward pass counts two.

Run: python benchmarks/iteration_cost.py [--repeats 3] [--guidance-scale 1.0] [--json out.json]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import statistics
import time

import torch

from creditzoo.learner.config import TrainConfig
from creditzoo.learner.grpo import GRPOLearner
from creditzoo.learner.run import build_reward
from creditzoo.models import load_model
from creditzoo.tasks import get_task

CASES = [
    ("flow_grpo", "ode"),
    ("incremental", "ode"),
    ("tp_grpo_strict", "ode"),
    ("tp_grpo_strict", "ode:2"),
    ("tp_grpo_strict", "x0"),
    ("tempflow", "ode"),
    ("g2rpo", "ode"),
    ("branch_grpo", "-"),
]
OPTIONS = {"branch_grpo": {"split_steps": [0, 2, 4]}}  # 8 leaves per tree: the default group of 8
PHASES = ("sampling", "completions", "reward", "update", "total")


def make_learner(config: TrainConfig) -> GRPOLearner:
    task = get_task(config.env)
    model = load_model(task.default_model, device=torch.device("cpu"))
    return GRPOLearner(config, model, build_reward(task, config), task.train_prompts(), torch.device("cpu"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--guidance-scale", type=float, default=1.0)
    parser.add_argument("--prompts", type=int, default=8)
    parser.add_argument("--group-size", type=int, default=8)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--json", type=str, default=None)
    args = parser.parse_args()
    base = TrainConfig(
        prompts_per_iteration=args.prompts,
        group_size=args.group_size,
        num_steps=args.steps,
        guidance_scale=args.guidance_scale,
    )
    learners = {
        case: make_learner(
            dataclasses.replace(
                base,
                algo=case[0],
                completion=case[1] if case[1] != "-" else "ode",
                algo_options=OPTIONS.get(case[0], {}),
            )
        )
        for case in CASES
    }
    for learner in learners.values():
        learner.iteration(1)  # warm-up
    timings: dict[tuple[str, str], list[dict]] = {case: [] for case in CASES}
    for _ in range(args.repeats):
        for case, learner in learners.items():
            started = time.perf_counter()
            metrics = learner.iteration(1)  # same prompts and noise every time
            metrics.metrics["seconds"]["total"] = time.perf_counter() - started
            timings[case].append(metrics.metrics)
    print(
        f"machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads, "
        f"torch {torch.__version__}; B={base.batch_size}, T={base.num_steps}, K={base.resolved_window_size}, "
        f"guidance {args.guidance_scale}, {args.repeats} repeats (median)"
    )
    reference = None
    rows = []
    for case in CASES:
        runs = timings[case]
        seconds = {p: statistics.median(r["seconds"].get(p, 0.0) for r in runs) for p in PHASES}
        evals = runs[0]["model_evals"]
        rewards = runs[0]["reward_calls"]
        if reference is None:
            reference = (seconds["total"], evals, rewards)
        time_ratio = seconds["total"] / reference[0]
        eval_ratio = evals / reference[1]
        rows.append(
            {
                "algo": case[0],
                "completion": case[1] if case[0] not in ("flow_grpo", "branch_grpo") else "-",
                **{f"{p}_s": round(seconds[p], 3) for p in PHASES},
                "model_evals": evals,
                "sampling_evals": runs[0]["sampling_evals"],
                "completion_evals": runs[0]["completion_evals"],
                "reward_calls": rewards,
                "time_ratio": round(time_ratio, 3),
                "eval_ratio": round(eval_ratio, 3),
                "time_per_eval_ratio": round(time_ratio / eval_ratio, 3),
            }
        )
    header = [
        "algo",
        "completion",
        *[f"{p}_s" for p in PHASES],
        "model_evals",
        "completion_evals",
        "reward_calls",
        "time_ratio",
        "eval_ratio",
        "time_per_eval_ratio",
    ]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in rows:
        print("| " + " | ".join(str(row[h]) for h in header) + " |")
    if args.json:
        with open(args.json, "w") as stream:
            json.dump(rows, stream, indent=2)


if __name__ == "__main__":
    main()
