"""Diagnosis from the rollout records: where a tree's loss puts its weight, and how far apart a tree's leaves land.

Usage: ``python studies/zoo/diagnose_tree.py`` (from the repository root; reads the zoo study's committed records).

For every run directory named below and every recorded iteration it reads ``advantages`` [B, K], the edge
``weights`` [B, K] (a tree's 1/m for an edge shared by m leaves; 1 for a chain, which records none), ``group_ids``
and ``final_rewards``, and prints, averaged over iterations 1-20 and the three seeds:

* per window step k, the **credit mass** per prompt, sum over rows of weight x |advantage| divided by the number of
  prompts: how much of the policy-gradient loss the step carries (a chain with group G gives about G x E|A|);
* the within-group standard deviation of the final rewards (ddof 1) and the share of groups whose leaves hold
  fewer than half as many distinct rewards as rows: how similar the images of one prompt are; also at iteration 1
  alone, where every run samples from the base model.
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file

ROOT = Path(__file__).parent
RUNS = {
    "branch_grpo, release defaults (runs-tree-release)": "runs-tree-release/branch_grpo-seed{}",
    "branch_grpo, population std (runs-tree)": "runs-tree/branch_grpo-seed{}",
    "branch_grpo, no std (runs-tree-stdnone)": "runs-tree-stdnone/branch_grpo-seed{}",
    "branch_grpo, batch-wide std (runs-tree-stdglobal)": "runs-tree-stdglobal/branch_grpo-seed{}",
    "flow_grpo, 4 x 16 control (runs-control)": "runs-control/flow_grpo-seed{}",
    "branch_grpo, depths 1-4 untrained (runs-tree-pruneshallow)": "runs-tree-pruneshallow/branch_grpo-seed{}",
    "flow_grpo, 4 x 16, window steps 4-8 only (runs-control-late)": "runs-control-late/flow_grpo-seed{}",
}


def summarise(pattern: str, first: int = 1, last: int = 20) -> tuple[torch.Tensor, float, float] | None:
    """Mean credit mass per step [K], within-group reward SD and share of low-diversity groups, over seeds 0-2.

    Args:
        pattern: a run directory relative to this folder, with ``{}`` for the seed.
        first: first iteration read.
        last: last iteration read.
    """
    masses, spreads, narrow = [], [], []
    for seed in range(3):
        directory = ROOT / pattern.format(seed) / "rollouts"
        if not directory.is_dir():
            return None
        for iteration in range(first, last + 1):
            record = load_file(directory / f"iter_{iteration:06d}.safetensors")
            advantages = record["advantages"]  # [B, K]
            weights = record.get("weights", torch.ones_like(advantages))  # [B, K]
            groups = record["group_ids"]
            prompts = int(groups.unique().numel())
            masses.append((weights * advantages.abs()).sum(dim=0) / prompts)
            for group in groups.unique():
                rewards = record["final_rewards"][groups == group]
                spreads.append(float(rewards.std()))
                narrow.append(float(rewards.unique().numel() < rewards.numel() / 2))
    return torch.stack(masses).mean(dim=0), sum(spreads) / len(spreads), sum(narrow) / len(narrow)


def main() -> None:
    """Print the per-step credit mass and the leaf spread of every run group."""
    for name, pattern in RUNS.items():
        summary = summarise(pattern)
        if summary is None:
            print(f"{name}: not recorded")
            continue
        mass, spread, narrow = summary
        steps = " ".join(f"{value:5.2f}" for value in mass.tolist())
        print(f"{name}\n  credit mass per prompt, window steps 0-{mass.numel() - 1}: {steps}  (total {mass.sum():.2f})")
        print(f"  within-group reward SD {spread:.4f}; groups with < half distinct rewards {narrow:.2f}")
        _, spread, narrow = summarise(pattern, 1, 1)
        print(
            f"  at iteration 1 (the base model's samples): within-group reward SD {spread:.4f}; "
            f"groups with < half distinct rewards {narrow:.2f}"
        )


if __name__ == "__main__":
    main()
