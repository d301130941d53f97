"""Time every registered algorithm on the paper's batch (B=1152, K=9) and a large one (B=65536, K=39).

Run: python benchmarks/algorithms.py [--repeats N]. Reports the median wall time per call (CPU, float32,
groups of 24 for the paper's batch: 48 prompts x 24 samples; groups of 16 for the large one).
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch

from creditzoo.algorithms import ALGORITHMS, get_algorithm
from creditzoo.rollout import Rollout

CASES = [(1152, 9, 24), (65536, 39, 16)]


def make_rollout(batch: int, steps: int, group_size: int) -> Rollout:
    gen = torch.Generator().manual_seed(0)
    rewards = torch.rand(batch, steps + 1, generator=gen)
    group_ids = torch.arange(batch // group_size).repeat_interleave(group_size)
    return Rollout(group_ids=group_ids, completion_rewards=rewards)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {platform.processor() or platform.machine()}")
    print("| algorithm | B=1152, K=9 (ms) | B=65536, K=39 (ms) |\n|---|---|---|")
    rollouts = [make_rollout(*case) for case in CASES]
    for name in ALGORITHMS:
        algorithm = get_algorithm(name)
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
