"""Why the theory agrees where it does: the exact prediction against approximations, ties, and small batches.

Usage: python3 ablation.py RUN_DIR > ablation.md   (RUN_DIR: a run with rollout records; reads verdict/robustness.json
for the measured values). Prints markdown. Trains and samples nothing; about a minute on one core.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch

from creditzoo.algorithms.tp_grpo import turning_points
from creditzoo.analysis import load_records
from creditzoo.analysis.noise_theory import (
    TurningPointRule,
    clean_marks,
    mark_probabilities,
    predict_turning_points,
    turning_point_patterns,
)

SIGMAS = (0.01, 0.02, 0.05, 0.1, 0.2)
RULES = (TurningPointRule(strict=False), TurningPointRule(strict=True))


def measured(path: Path) -> dict:
    """(noise SD, rule name, quantity) -> measured mean over repeats, pooled over steps, from robustness.json."""
    rows = json.loads(path.read_text())["theory"]
    return {
        (row["sigma"], row["subject"].removeprefix("rule:"), row["quantity"]): row["measured"]["mean"]
        for row in rows
        if row["subject"].startswith("rule:") and row["step"] is None
    }


def approximations(rewards: np.ndarray, table: dict) -> None:
    """The exact prediction against the independent and clean-trend approximations, beside the measurement."""
    print("## The exact prediction against two approximations (pooled over steps)\n")
    print("Precision / recall of each rule before balancing. *measured*: mean over 16 noisy copies (verdict/).")
    print("*independent*: every ordering's noise taken as independent of the others' (neighbouring increments")
    print("share a score, and the trend shares R_0 and R_K). *clean trend*: the sign of R_K - R_0 taken from the")
    print("clean scores.\n")
    print("| rule | SD | measured | exact | independent | clean trend |")
    print("|---|---|---|---|---|---|")
    for rule in RULES:
        for sigma in SIGMAS:
            cells = [f"{table[(sigma, rule.name, 'precision')]:.3f} / {table[(sigma, rule.name, 'recall')]:.3f}"]
            for method in ("exact", "independent", "clean_trend"):
                p = predict_turning_points(rewards, sigma, rule, method=method)
                cells.append(f"{p.precision_all:.3f} / {p.recall_all:.3f}")
            print(f"| {rule.name} | {sigma:g} | " + " | ".join(cells) + " |")
    print()


def tied(rewards: np.ndarray, rule: TurningPointRule) -> np.ndarray:
    """Bool [N, K]: one of the step's pattern orderings compares two equal clean scores (noise decides it alone)."""
    steps = rewards.shape[1] - 1
    out = np.zeros((rewards.shape[0], steps), dtype=bool)
    for k in range(steps):
        for pattern in turning_point_patterns(k, steps, rule):
            out[:, k] |= np.any([rewards[:, lo] == rewards[:, hi] for lo, hi in pattern if lo != hi], axis=0)
    return out


def ties(rewards: np.ndarray) -> None:
    """How many clean scores tie, and how many expected false marks sit at steps whose pattern holds a tie."""
    print("## Ties: clean scores that are exactly equal\n")
    d = np.diff(rewards, axis=1)
    print(f"{(d == 0).mean():.1%} of the clean increments are exactly 0 ({(d == 0).mean(0).round(3).tolist()} per")
    print(f"step); {(rewards == 0).all(1).mean():.1%} of the trajectories score 0 at every completion. A tied")
    print("ordering holds with probability 1/2 under any noise, so a step whose pattern rests on one is marked at")
    print("random. Expected false turning points (noisy marks the clean rule does not make), split by whether the")
    print("step's pattern holds a tie:\n")
    print("| rule | SD | false marks per 1,000 steps | of which at tied steps | tied steps |")
    print("|---|---|---|---|---|")
    for rule in RULES:
        clean = clean_marks(rewards, rule)
        at_tie = tied(rewards, rule)
        for sigma in (0.01, 0.05, 0.2):
            p = mark_probabilities(rewards, sigma, rule)
            false = p * ~clean
            print(
                f"| {rule.name} | {sigma:g} | {1000 * false.mean():.1f} | {false[at_tie].sum() / false.sum():.1%} | "
                f"{at_tie.mean():.1%} |"
            )
    print()


def per_step(rewards: np.ndarray) -> None:
    """The typical |d_k| per step: it sets the flip probability."""
    print("## Why precision falls along the trajectory\n")
    d = np.abs(np.diff(rewards, axis=1))
    print("Median |d_k| of the untied clean increments per step (the flip probability is Phi(-|d| / (sqrt 2 SD))):\n")
    print("| step | " + " | ".join(str(k) for k in range(d.shape[1])) + " |")
    print("|---" * (d.shape[1] + 1) + "|")
    print("| median abs(d_k) | " + " | ".join(f"{np.median(d[d[:, k] > 0, k]):.4f}" for k in range(d.shape[1])) + " |")
    print()


def balancing(rewards: np.ndarray) -> None:
    """Predicted recall of the clean marks by |r_agg| quartile: what balancing (largest |r_agg| kept) selects."""
    print("## Balancing prefers the turning points that noise rarely overturns\n")
    print("Predicted recall of the clean marks (the probability that a clean turning point is still marked under")
    print("noise), by quartile of |r_agg| = |R_K - R_k| among the clean marks. Balancing keeps the largest |r_agg|")
    print("of each sign.\n")
    print("| rule | SD | quartile 1 (smallest) | 2 | 3 | 4 (largest) |")
    print("|---|---|---|---|---|---|")
    for rule in RULES:
        clean = clean_marks(rewards, rule)
        r_agg = np.abs(rewards[:, -1:] - rewards[:, :-1])[clean]
        edges = np.quantile(r_agg, [0.25, 0.5, 0.75])
        quartile = np.searchsorted(edges, r_agg, side="right")
        for sigma in (0.01, 0.05, 0.2):
            kept = mark_probabilities(rewards, sigma, rule)[clean]
            cells = [f"{kept[quartile == q].mean():.3f}" for q in range(4)]
            print(f"| {rule.name} | {sigma:g} | " + " | ".join(cells) + " |")
    print()


def balancing_drops(records: list, draws: int = 8) -> None:
    """What noisy balancing drops: the share of true turning points among the noisy marks it keeps and drops."""
    from creditzoo.algorithms import get_algorithm
    from creditzoo.rollout import Rollout

    print("What balancing does on noisy scores (strict rule, 8 Gaussian copies of every record): the share of")
    print("noisy marks that are clean marks of the rule (before balancing), among the marks balancing keeps and")
    print("among those it drops.\n")
    print("| SD | noisy marks dropped by balancing | true among kept | true among dropped |")
    print("|---|---|---|---|")
    algorithm = get_algorithm("tp_grpo_strict")
    gen = torch.Generator().manual_seed(1)
    for sigma in (0.01, 0.05, 0.2):
        kept_true = kept = dropped_true = dropped = 0
        for record in records:
            clean = record.completion_rewards(clean=True).double()  # [B, K+1]
            truth = turning_points(clean, strict=True)  # [B, K]
            for _ in range(draws):
                noisy = clean + sigma * torch.randn(clean.shape, generator=gen, dtype=torch.float64)
                marks = turning_points(noisy, strict=True)
                balanced = algorithm(Rollout(group_ids=record.tensors["group_ids"], completion_rewards=noisy))
                keep, drop = balanced.turning_points, marks & ~balanced.turning_points
                kept_true, kept = kept_true + int((keep & truth).sum()), kept + int(keep.sum())
                dropped_true, dropped = dropped_true + int((drop & truth).sum()), dropped + int(drop.sum())
        share = dropped / (kept + dropped)
        print(f"| {sigma:g} | {share:.1%} | {kept_true / kept:.3f} | {dropped_true / dropped:.3f} |")
    print()


def small_batches(rewards: np.ndarray, batch: int, draws: int = 2000) -> None:
    """Expectation of the ratio (what one batch's precision averages to) against the ratio of expectations."""
    print(f"## Ratio of expectations against expectation of the ratio: one batch of {batch} trajectories\n")
    print("The prediction is sum(c p) / sum(p); a measured precision is E[hits / marked]. Pooled over a run's 2,560")
    print("trajectories the two agree to 0.001 (verdict/robustness.json: `pooled` beside `measured`). Over one batch")
    print(f"(the first {batch} trajectories), {draws} Monte-Carlo copies, strict rule:\n")
    print("| SD | step | predicted (ratio of expectations) | E[hits / marked] over copies (+- 2 SE) | P(no mark) |")
    print("|---|---|---|---|---|")
    gen = torch.Generator().manual_seed(0)
    sub = rewards[:batch]
    rule = TurningPointRule(strict=True)
    clean = torch.tensor(clean_marks(sub, rule))
    for sigma in (0.02, 0.2):
        noisy = torch.tensor(sub) + sigma * torch.randn(draws, *sub.shape, generator=gen, dtype=torch.float64)
        marks = turning_points(noisy.reshape(-1, sub.shape[1]), strict=True).reshape(draws, *clean.shape)
        prediction = predict_turning_points(sub, sigma, rule)
        for k in (0, 4, 7):
            hits, marked = (marks[:, :, k] & clean[:, k]).sum(1).double(), marks[:, :, k].sum(1).double()
            ratio = (hits / marked)[marked > 0]
            print(
                f"| {sigma:g} | {k} | {prediction.precision[k]:.3f} | {float(ratio.mean()):.3f} +- "
                f"{2 * float(ratio.std()) / len(ratio) ** 0.5:.3f} | {float((marked == 0).double().mean()):.3f} |"
            )
    print()


def main() -> None:
    """Print every section for the run named on the command line."""
    run = Path(sys.argv[1])
    records = load_records(run)
    rewards = torch.cat([r.completion_rewards(clean=True) for r in records]).double().numpy()  # [N, K+1]
    print(f"# Ablations on {run.name}'s {rewards.shape[0]} recorded clean trajectories (K = {rewards.shape[1] - 1})\n")
    print("Written by `ablation.py`; see README.md for the reading.\n")
    approximations(rewards, measured(Path(__file__).parent / "verdict" / "robustness.json"))
    ties(rewards)
    per_step(rewards)
    balancing(rewards)
    balancing_drops(records)
    small_batches(rewards, batch=64)


if __name__ == "__main__":
    main()
