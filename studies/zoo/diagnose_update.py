"""Diagnosis: does one GRPO update move each transition's log-probability in the direction of its advantage.

Usage: ``python studies/zoo/diagnose_update.py ALGO GROUP_SIZE PROMPTS_PER_ITERATION`` (geneval task defaults
otherwise, seed 0). Samples iteration 1, assigns credit, runs the update, then recomputes every trained
transition's log-probability under the updated policy and prints, per window step k, the correlation between
the change of log-probability and the advantage, the mean absolute change, and the credit's weight.
A sign error in the loss or a transition trained with another row's advantage shows as a correlation <= 0.
"""

from __future__ import annotations

import sys

import torch

from creditzoo.learner.config import TrainConfig
from creditzoo.learner.grpo import GRPOLearner
from creditzoo.learner.run import build_reward, load_task
from creditzoo.models import load_model
from creditzoo.models.base import select_conditioning


def main(algo: str, group_size: int, prompts_per_iteration: int) -> None:
    """Print the per-step diagnosis for one update of ``algo``."""
    config = TrainConfig.for_task(
        "geneval", algo=algo, group_size=group_size, prompts_per_iteration=prompts_per_iteration, seed=0
    )
    task = load_task(config)
    model = load_model(task.default_model, device=torch.device("cpu"))
    learner = GRPOLearner(config, model, build_reward(task, config), task.train_prompts(), torch.device("cpu"))
    prompts, group_ids = learner.draw_prompts(1)
    rollout = learner.collect(prompts, group_ids, 1)
    credit = learner.assign_credit(rollout)
    learner.update(rollout, credit, 1, group_ids)
    rows = torch.arange(len(prompts))
    cond = select_conditioning(learner.env.cond, rows)
    with torch.no_grad():
        after = []
        for k in range(learner.env.window.size):
            j = learner.env.window.start + k
            sigma = learner.env.sigmas[j].expand(len(prompts))
            step = learner._policy_step(learner.policy, rollout.inputs[:, k], rollout.outputs[:, k], sigma, cond, j)
            after.append(step.log_prob.float())
    delta = torch.stack(after, dim=1) - rollout.log_probs  # [B, K]
    weights = credit.weights if credit.weights is not None else torch.ones_like(credit.advantages)
    for k in range(delta.shape[1]):
        correlation = torch.corrcoef(torch.stack([delta[:, k], credit.advantages[:, k]]))[0, 1]
        print(
            f"step {k}: corr(change of log-prob, advantage) {correlation:+.3f}, "
            f"mean |change| {delta[:, k].abs().mean():.2e}, weight {weights[0, k]:.3f}"
        )


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))
