"""Time every registered algorithm on the paper's batch (B=1152, K=9) and a large one (B=65536, K=39).

Run: python benchmarks/algorithms.py [--repeats N]. Reports the median wall time per call (CPU, float32,
groups of 24 for the paper's batch: 48 prompts x 24 samples; groups of 16 for the large one). Each algorithm gets
a rollout of the shape it needs: chains [B, K+1] completion rewards; anchor rollouts [B, K, L] branch rewards
(L = its number of granularities); trees with the default split set (0, 2, 4, 6), so groups of 16 leaves at
both sizes, with path log-probs.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch

from creditzoo.algorithms import ALGORITHMS, default_split_steps, get_algorithm
from creditzoo.rollout import Rollout

CASES = [(1152, 9, 24), (65536, 39, 16)]


def make_rollout(batch: int, steps: int, group_size: int, shape: str = "chain", width: int = 1) -> Rollout:
    gen = torch.Generator().manual_seed(0)
    if shape == "tree":
        splits = default_split_steps(steps)
        group_size = 2 ** len(splits)
    group_ids = torch.arange(batch // group_size).repeat_interleave(group_size)
    if shape == "anchor":
        rewards = torch.rand(batch, steps, width, generator=gen)  # [B, K, L]
        return Rollout(group_ids=group_ids, shape="anchor", branch_rewards=rewards)
    if shape == "tree":
        return Rollout(
            group_ids=group_ids,
            shape="tree",
            final_rewards=torch.rand(batch, generator=gen),
            num_steps=steps,
            split_steps=splits,
            log_probs=torch.randn(batch, steps, generator=gen),
        )
    return Rollout(group_ids=group_ids, completion_rewards=torch.rand(batch, steps + 1, generator=gen))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {platform.processor() or platform.machine()}")
    print("| algorithm | B=1152, K=9 (ms) | B=65536, K=39 (ms) |\n|---|---|---|")
    variants = {"branch_grpo": {}, "branch_grpo fusion=path": {"fusion": "path"}}
    for name in [*ALGORITHMS, "branch_grpo fusion=path"]:
        algorithm = get_algorithm(name.split()[0], **variants.get(name, {}))
        width = len(algorithm.bound_options.get("granularities", (0,)))
        rollouts = [make_rollout(*case, shape=algorithm.rollout_shape, width=width) for case in CASES]
        cells = []
        for rollout in rollouts:
            algorithm(rollout)  # warm-up
            times = []
            for _ in range(args.repeats):
                start = time.perf_counter()
                algorithm(rollout)
                times.append(time.perf_counter() - start)
            cells.append(f"{statistics.median(times) * 1e3:.2f}")
        print(f"| {name} | {cells[0]} | {cells[1]} |")


if __name__ == "__main__":
    main()
