"""The GRPO learner on a tiny model: ratio 1 at the first update, KL, gradients, parameters move."""

import dataclasses

import pytest
import torch
from lanes import first_fast
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


@pytest.mark.parametrize("algo", first_fast(ALGORITHMS))
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


# ------------------------------------------------------------- step schedules and weights (section 7.1)


@pytest.mark.parametrize(
    "options",
    first_fast(
        [
            {"window_schedule": "slide:2:1:1"},
            {"train_steps": "random:0.5"},
            {"step_weight": "noise"},
            {"window_schedule": "slide:2:1:1", "train_steps": "random:0.5", "step_weight": "noise", "beta": 0.1},
        ]
    ),
)
def test_schedule_options_train(options: dict) -> None:
    learner = make_learner(**options)
    before = lora_snapshot(learner)
    for iteration in (1, 2):
        result = learner.iteration(iteration)
        metrics = result.metrics
        assert metrics["loss"] is not None and torch.isfinite(torch.tensor(metrics["loss"]))
        assert metrics["ratio_dev_first_update"] < 1e-5
    after = lora_snapshot(learner)
    assert any(not torch.equal(before[n], after[n]) for n in before)
    record = result.record
    if "window_schedule" in options:
        assert record["window_start"].tolist() == [1]  # slide:2:1:1 on T=4: iteration 2 starts at step 1
        assert record["completion_rewards"].shape[1] == 3  # W + 1 states follow the window
    if "train_steps" in options:
        assert record["train_mask"].shape == (6, record["advantages"].shape[1])
        # max(1, floor(F * K)) (section 9.1): floor(0.5 * 2) = 1 with the window W = 2, floor(0.5 * 3) = 1 with K = 3
        assert (record["train_mask"].sum(1) == 1).all()
    if options.get("step_weight") == "noise":
        assert record["step_weights"].mean().item() == pytest.approx(1.0, rel=1e-5)
        assert torch.allclose(record["weights"], record["step_weights"].expand_as(record["weights"]))


def test_sliding_window_samples_the_same_as_a_fixed_window_there() -> None:
    sliding = make_learner(window_schedule="slide:2:1:1").iteration(2)
    fixed = make_learner(window_size=2, window_start=1).iteration(2)
    assert sliding.metrics["window_start"] == fixed.metrics["window_start"] == 1
    for name in ("log_probs", "completion_rewards", "advantages"):
        assert torch.equal(sliding.record[name], fixed.record[name]), name
    assert sliding.metrics["loss"] == fixed.metrics["loss"]


def test_random_subset_costs_no_forward_pass_for_masked_steps() -> None:
    full = make_learner(updates_per_iteration=1).iteration(1).metrics
    half = make_learner(updates_per_iteration=1, train_steps="random:0.34").iteration(1).metrics  # 1 of K=3
    assert half["kept_fraction"] == full["kept_fraction"]
    assert half["train_evals"] * 3 == full["train_evals"]
    assert half["trained_step_fraction"] == pytest.approx(1 / 3)


@pytest.mark.slow
def test_all_ones_weights_give_exactly_the_old_loss(monkeypatch) -> None:
    old = make_learner(beta=0.05)
    old_metrics = old.iteration(1).metrics
    ones = make_learner(beta=0.05)
    monkeypatch.setattr(ones, "loss_weights", lambda credit: torch.ones_like(credit.advantages))
    ones_metrics = ones.iteration(1).metrics
    assert ones_metrics["loss"] == old_metrics["loss"]
    assert ones_metrics["grad_norm"] == old_metrics["grad_norm"]
    a, b = lora_snapshot(old), lora_snapshot(ones)
    assert all(torch.equal(a[n], b[n]) for n in a)
    noise = make_learner(beta=0.05, step_weight="noise").iteration(1).metrics
    assert noise["loss"] != old_metrics["loss"]  # the weights reach the loss


def test_weighted_surrogate_by_hand() -> None:
    log_prob = torch.log(torch.tensor([1.5, 0.5, 1.0]))
    advantages = torch.tensor([1.0, 1.0, -2.0])
    plain = clipped_surrogate(log_prob, torch.zeros(3), advantages, clip_range=0.2)
    ones = clipped_surrogate(log_prob, torch.zeros(3), advantages, clip_range=0.2, weights=torch.ones(3))
    assert torch.equal(plain.loss, ones.loss)
    weighted = clipped_surrogate(
        log_prob, torch.zeros(3), advantages, clip_range=0.2, weights=torch.tensor([2, 0, 1.0])
    )
    assert weighted.loss.item() == pytest.approx((2 * -1.2 + 0 + 2.0) / 3)
    partial = clipped_surrogate(log_prob[:2], torch.zeros(2), advantages[:2], clip_range=0.2, batch_size=4)
    assert partial.loss.item() == pytest.approx((-1.2 - 0.5) / 4)


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"window_schedule": "slide:4:1:1"}, "cannot fit T=4"),
        ({"window_schedule": "slide:2:1:1", "window_size": 3}, "leave window_size"),
        ({"train_steps": "random:0"}, r"F in \(0, 1\]"),
        ({"step_weight": "sigma"}, "valid: none, noise"),
        ({"algo": "branch_grpo"}, "group size must be 4"),
        ({"algo": "branch_grpo", "group_size": 4, "algo_options": {"split_steps": [0, 3]}}, r"0\.\.2"),
    ],
)
def test_config_rejects_bad_schedules(overrides: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        dataclasses.replace(BASE, **overrides)


def test_tempflow_defaults_to_noise_weights() -> None:
    assert dataclasses.replace(BASE, algo="tempflow").resolved_step_weight == "noise"
    assert dataclasses.replace(BASE, algo="tempflow", step_weight="none").resolved_step_weight == "none"
    assert BASE.resolved_step_weight == "none"


def test_env_window_is_settable_per_episode() -> None:
    from creditzoo.envs import DenoisingConfig, DenoisingEnv

    env = DenoisingEnv(
        TinyFlowModel(), brightness_reward, num_envs=2, config=DenoisingConfig(num_steps=5, window_size=2)
    )
    env.reset(seed=0, options={"prompts": TRAIN_PROMPTS[:2], "window_start": 2})
    assert (env.window.start, env.window.size) == (2, 2)
    env.reset(seed=0, options={"prompts": TRAIN_PROMPTS[:2]})
    assert (env.window.start, env.window.size) == (0, 2)  # back to the configured window
    with pytest.raises(ValueError, match="does not fit in 5 steps"):
        env.reset(seed=0, options={"prompts": TRAIN_PROMPTS[:2], "window_start": 4})
