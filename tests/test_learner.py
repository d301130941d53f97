"""The GRPO learner on a tiny model: ratio 1 at the first update, KL, gradients, parameters move."""

import dataclasses

import pytest
import torch
from tiny_model import TRAIN_PROMPTS, TinyFlowModel, brightness_reward

from creditzoo.algorithms import ALGORITHMS, get_algorithm
from creditzoo.learner.config import TrainConfig
from creditzoo.learner.grpo import GRPOLearner
from creditzoo.learner.loss import clipped_surrogate, gaussian_mean_kl
from creditzoo.rewards.noise import NoisyReward

BASE = TrainConfig(
    algo="tp_grpo_strict",
    prompts_per_iteration=2,
    group_size=3,
    num_steps=4,
    iterations=2,
    lora_rank=4,
    learning_rate=1e-2,
    clip_range=0.2,
    eval_steps=2,
    eval_samples_per_prompt=1,
)


ALGORITHMS_SHAPES = {name: get_algorithm(name).rollout_shape for name in ALGORITHMS}


def make_learner(**overrides) -> GRPOLearner:
    config = dataclasses.replace(BASE, **overrides)
    reward = NoisyReward(brightness_reward, None, seed=config.seed)
    return GRPOLearner(config, TinyFlowModel(), reward, TRAIN_PROMPTS, torch.device("cpu"))


def lora_snapshot(learner: GRPOLearner) -> dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in learner.policy.named_parameters() if p.requires_grad}


def test_ratio_is_one_at_the_first_update_and_kl_zero_while_untouched() -> None:
    learner = make_learner(beta=0.1, updates_per_iteration=1)
    # gaussian LoRA init leaves B = 0: the adapter is untouched, so policy == reference
    result = learner.iteration(1)
    assert result.metrics["ratio_dev_first_update"] < 1e-5
    assert result.metrics["kl"] == pytest.approx(0.0, abs=1e-12)


def test_second_update_sees_ratio_move() -> None:
    learner = make_learner(updates_per_iteration=2, inner_epochs=2)
    metrics = learner.iteration(1).metrics
    assert metrics["ratio_dev_first_update"] < 1e-5
    assert metrics["ratio_dev_max"] > 1e-4


def test_gradients_only_in_lora_and_parameters_change() -> None:
    learner = make_learner()
    frozen = {n: p.detach().clone() for n, p in learner.policy.named_parameters() if not p.requires_grad}
    before = lora_snapshot(learner)
    assert before and all("lora_" in name for name in before)
    learner.iteration(1)
    after = lora_snapshot(learner)
    assert any(not torch.equal(before[n], after[n]) for n in before)
    for name, parameter in learner.policy.named_parameters():
        if not parameter.requires_grad:
            assert parameter.grad is None
            assert torch.equal(parameter, frozen[name])


@pytest.mark.parametrize("algo", list(ALGORITHMS))
def test_every_algorithm_trains_two_iterations(algo: str) -> None:
    group = 2 if ALGORITHMS_SHAPES[algo] == "tree" else 3  # K = 2: the default tree splits once, 2 leaves
    learner = make_learner(algo=algo, num_steps=3, group_size=group)
    for iteration in (1, 2):
        metrics = learner.iteration(iteration).metrics
        assert metrics["loss"] is None or torch.isfinite(torch.tensor(metrics["loss"]))
        assert metrics["kept_fraction"] > 0
        assert len(metrics["tp_rate_per_step"]) == 2
    if algo == "flow_grpo":
        assert metrics["completion_evals"] == 0  # completions are skipped when not needed


def test_zero_signal_groups_are_dropped() -> None:
    learner = make_learner(algo="flow_grpo")
    constant = NoisyReward(lambda images, prompts: torch.full((images.shape[0],), 0.5), None)
    learner.env.reward = constant
    metrics = learner.iteration(1).metrics
    assert metrics["kept_fraction"] == 0 and metrics["loss"] is None


def test_same_seed_same_iteration() -> None:
    a = make_learner().iteration(1)
    b = make_learner().iteration(1)
    assert torch.equal(a.record["advantages"], b.record["advantages"])
    assert a.metrics["loss"] == b.metrics["loss"]


def test_clipped_surrogate_by_hand() -> None:
    log_prob = torch.log(torch.tensor([1.5, 0.5, 1.0]))
    advantages = torch.tensor([1.0, 1.0, -2.0])
    out = clipped_surrogate(log_prob, torch.zeros(3), advantages, clip_range=0.2)
    # sample 0: max(-1.5, -1.2) = -1.2; sample 1: max(-0.5, -0.8) = -0.5; sample 2: max(2, 2) = 2
    assert out.loss.item() == pytest.approx((-1.2 - 0.5 + 2.0) / 3)
    assert out.clip_fraction.item() == pytest.approx(2 / 3)
    kl = gaussian_mean_kl(torch.ones(2, 3), torch.zeros(2, 3), torch.full((2, 1), 0.5))
    assert kl.item() == pytest.approx(2.0)
