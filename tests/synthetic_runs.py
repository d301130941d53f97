"""Synthetic run directories in the format creditzoo train writes, with answers known by construction."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from creditzoo.algorithms import get_algorithm
from creditzoo.learner.checkpoint import atomic_write_json, write_metrics, write_record
from creditzoo.learner.config import TrainConfig
from creditzoo.rollout import Rollout

# Trajectories with K = 5 (see docs/math.md section 3's worked example for A).
A = [0.50, 0.48, 0.47, 0.52, 0.51, 0.55]  # tp_grpo marks steps 2 (+.08) and 4 (+.04); strict only 2
B = [0.10, 0.20, 0.30, 0.40, 0.50, 0.60]  # monotone up: only the initial step (r_agg +.5) in both variants
C = [0.50, 0.52, 0.53, 0.48, 0.49, 0.45]  # mirror of A: steps 2 (-.08) and 4 (-.04); strict only 2
D = [0.50] * 6  # flat: no trend, every increment zero, no turning point

KNOWN_RECORDS = [
    # iteration 1: groups {A, B}, {C, D}; iteration 2: groups {B, D}, {D, D}
    (torch.tensor([A, B, C, D]), torch.tensor([0, 0, 1, 1])),
    (torch.tensor([B, D, D, D]), torch.tensor([0, 0, 1, 1])),
]


def record_for(algo: str, clean: torch.Tensor, group_ids: torch.Tensor, noisy: torch.Tensor | None = None) -> dict:
    """The record the learner would write for ``algo`` trained on ``noisy`` (default: the clean rewards)."""
    noisy = clean.clone() if noisy is None else noisy
    algorithm = get_algorithm(algo)
    if algorithm.needs_completions:
        rollout = Rollout(group_ids=group_ids, completion_rewards=noisy)
    else:
        rollout = Rollout(group_ids=group_ids, final_rewards=noisy[:, -1].contiguous(), num_steps=noisy.shape[1] - 1)
    credit = algorithm(rollout)
    record = {
        "group_ids": group_ids,
        "final_rewards": noisy[:, -1].clone(),
        "final_rewards_clean": clean[:, -1].clone(),
        "step_rewards": credit.step_rewards,
        "turning_points": credit.turning_points,
        "advantages": credit.advantages,
        "log_probs": torch.zeros(noisy.shape[0], noisy.shape[1] - 1),
    }
    if algorithm.needs_completions:
        record["completion_rewards"] = noisy
        record["completion_rewards_clean"] = clean
    return record


def write_run(
    path: Path,
    *,
    algo: str = "tp_grpo_strict",
    seed: int = 0,
    records: list[tuple[torch.Tensor, torch.Tensor]] | None = None,
    test_scores: dict[int, float] | None = None,
    train_rewards: list[float] | None = None,
    model_evals: float = 100.0,
    seconds: float = 1.0,
    categories: dict[str, float] | None = None,
    **config: object,
) -> Path:
    """Write config.json, metrics.jsonl, rollouts/ and eval/ of a finished run.

    Args:
        path: the run directory to create.
        algo: the run's algorithm.
        seed: its seed.
        records: (clean completion rewards [B, K+1], group ids [B]) per iteration 1, 2, ...
        test_scores: iteration -> test partial score (iteration 0: the base model).
        train_rewards: clean train reward per iteration 1, 2, ... (default 0.5 + 0.01 * iteration).
        model_evals: model evaluations per iteration.
        seconds: wall-clock seconds per iteration.
        categories: category -> final partial score.
        **config: TrainConfig fields to override.
    """
    records = KNOWN_RECORDS if records is None else records
    iterations = len(records) if records else max(test_scores or {0: 0, 2: 0})
    test_scores = test_scores or {0: 0.5, iterations: 0.6}
    train_rewards = train_rewards or [0.5 + 0.01 * i for i in range(1, iterations + 1)]
    settings = TrainConfig(algo=algo, seed=seed, iterations=iterations, **config).to_dict()
    path.mkdir(parents=True)
    atomic_write_json(path / "config.json", settings)
    lines = [{"iteration": 0, "test_partial_score": test_scores[0], "test_strict_accuracy": test_scores[0] / 2}]
    for iteration in range(1, iterations + 1):
        line = {
            "iteration": iteration,
            "reward_clean_mean": train_rewards[iteration - 1],
            "model_evals": model_evals,
            "seconds": {"total": seconds},
        }
        if iteration in test_scores:
            line["test_partial_score"] = test_scores[iteration]
            line["test_strict_accuracy"] = test_scores[iteration] / 2
        lines.append(line)
    write_metrics(path, lines)
    for iteration, (rewards, group_ids) in enumerate(records or [], start=1):
        prompts = [f"prompt {int(g)}" for g in group_ids]
        write_record(path, iteration, record_for(algo, rewards, group_ids), prompts)
    per_category = {name: {"partial_score": s, "strict_accuracy": s / 2} for name, s in (categories or {}).items()}
    final = test_scores[max(test_scores)]
    atomic_write_json(path / "eval" / "final.json", {"partial_score": final, "per_category": per_category})
    return path


def write_sweep(root: Path, runs: dict[str, dict]) -> Path:
    """A sweep directory: each named run written by :func:`write_run`, listed in ``manifest.json``."""
    entries = []
    for name, options in runs.items():
        write_run(root / "runs" / name, **options)
        config = json.loads((root / "runs" / name / "config.json").read_text())
        entries.append(
            {
                "name": name,
                "dir": f"runs/{name}",
                "algo": config["algo"],
                "seed": config["seed"],
                "config": config,
                "status": "finished",
            }
        )
    (root / "manifest.json").write_text(json.dumps({"runs": entries, "grid": {}}))
    return root
