"""The learner on anchor-branch and tree rollouts: collector by shape, ratio 1, counts, records, training."""

import dataclasses
import json

import pytest
import torch
from lanes import first_fast
from tiny_model import TRAIN_PROMPTS, TinyFlowModel, brightness_reward

from creditzoo.learner.checkpoint import write_record
from creditzoo.learner.config import TrainConfig
from creditzoo.learner.grpo import GRPOLearner
from creditzoo.rewards.noise import NoisyReward
from creditzoo.shapes import SHAPES, EpisodeOptions, get_shape

BASE = TrainConfig(
    prompts_per_iteration=2,
    group_size=4,
    num_steps=5,
    iterations=2,
    lora_rank=4,
    learning_rate=1e-2,
    clip_range=0.2,
    eval_steps=2,
    eval_samples_per_prompt=1,
    updates_per_iteration=1,
)
# (algo, options, rollout shape): T = 5, K = 4; the tree splits at window steps 0 and 2 (4 leaves = the group).
CASES = [
    ("tempflow", {}, "anchor"),
    ("g2rpo", {"granularities": [1, 2]}, "anchor"),
    ("branch_grpo", {"split_steps": [0, 2]}, "tree"),
    ("tp_grpo_strict", {}, "chain"),
]


def make_learner(algo: str, options: dict, **overrides) -> GRPOLearner:
    config = dataclasses.replace(BASE, algo=algo, algo_options=options, **overrides)
    reward = NoisyReward(brightness_reward, None, seed=config.seed)
    return GRPOLearner(config, TinyFlowModel(), reward, TRAIN_PROMPTS, torch.device("cpu"))


def expected_counts(algo: str, config: TrainConfig) -> tuple[int, int, int]:
    """Sampling evals, completion evals and reward calls per iteration, from docs/math.md sections 7, 9.3, 9.4."""
    steps, start, size = config.num_steps, config.window_start, config.resolved_window_size
    prompts, group = config.prompts_per_iteration, config.group_size
    if algo == "tempflow":  # T anchor calls per prompt, C children per window step completed with the ODE
        extra = sum(steps - (start + k + 1) for k in range(size))
        return prompts * steps, prompts * group * extra, prompts * (group * size + 1)
    if algo == "g2rpo":  # per granularity: one Euler step j+1 -> j+2, then ceil((T - j - 2) / g) (section 9.3)
        extra = sum(
            0 if start + k + 1 == steps else 1 + -(-(steps - start - k - 2) // g) for k in range(size) for g in (1, 2)
        )
        return prompts * steps, prompts * group * extra, prompts * (group * size * 2 + 1)
    if algo == "branch_grpo":  # 2^(splits before grid step j) nodes per tree at grid step j; no completions
        nodes = sum(2 ** sum(1 for s in (0, 2) if start + s < j) for j in range(steps))
        return prompts * nodes, 0, prompts * group
    # chains (section 5): T calls per trajectory; completing z_k (k < K) takes T - (w + k) Euler steps, the first
    # of them on the velocity the trajectory computed at z_k anyway (section 5's count minus one per branch).
    extra = sum(steps - (start + k) - 1 for k in range(size))
    return prompts * group * steps, prompts * group * extra, prompts * group * (size + 1)


@pytest.mark.parametrize(("algo", "options", "shape"), first_fast(CASES, several=True))
def test_each_shape_trains_with_ratio_one_and_counted_work(algo, options, shape) -> None:
    learner = make_learner(algo, options, beta=0.05)
    assert learner.algorithm.rollout_shape == shape
    before = {n: p.detach().clone() for n, p in learner.policy.named_parameters() if p.requires_grad}
    result = learner.iteration(1)
    metrics = result.metrics
    assert metrics["ratio_dev_first_update"] < 1e-5  # logp_old recorded under the same weights
    assert metrics["kl"] == pytest.approx(0.0, abs=1e-12)  # untouched adapter: policy == reference
    assert torch.isfinite(torch.tensor(metrics["loss"]))
    after = {n: p.detach() for n, p in learner.policy.named_parameters() if p.requires_grad}
    assert any(not torch.equal(before[n], after[n]) for n in before)
    sampling, completion, rewards = expected_counts(algo, learner.config)
    assert (metrics["sampling_evals"], metrics["completion_evals"], metrics["reward_calls"]) == (
        sampling,
        completion,
        rewards,
    )
    assert result.shape == shape
    record = result.record
    batch, size = learner.config.batch_size, learner.config.resolved_window_size
    assert record["log_probs"].shape == (batch, size)
    if shape == "anchor":
        assert record["branch_rewards"].shape == (batch, size, len(options.get("granularities", [1])))
    if shape == "tree":
        assert record["split_steps"].tolist() == [0, 2]
        assert record["weights"][:, 0].tolist() == [0.5] * batch  # step-0 edges are shared by two leaves
    metrics = learner.iteration(2).metrics
    assert torch.isfinite(torch.tensor(metrics["loss"]))


def test_rows_are_the_collected_transitions() -> None:
    """The update trains exactly the collected (input, output) pairs: recomputed log-probs match the record."""
    learner = make_learner("branch_grpo", {"split_steps": [0, 2]})
    prompts, group_ids = learner.draw_prompts(1)
    rollout = learner.collect(prompts, group_ids, 1)
    assert rollout.shape == "tree" and rollout.inputs.shape == (8, 4, 3, 8, 8)
    # Each edge's input is the previous step's output on the same leaf path.
    torch.testing.assert_close(rollout.inputs[:, 1:], rollout.outputs[:, :-1])
    anchor = make_learner("tempflow", {})
    rollout = anchor.collect(prompts, group_ids, 1)
    # Anchor rows of a group share the anchor state at every step, and their children differ.
    torch.testing.assert_close(rollout.inputs[0], rollout.inputs[3])
    assert (rollout.outputs[0] - rollout.outputs[1]).abs().max() > 0.01


def test_tree_group_size_must_be_a_power_of_two_of_the_splits() -> None:
    with pytest.raises(ValueError, match="group size must be 4") as error:
        make_learner("branch_grpo", {"split_steps": [0, 2]}, group_size=3)
    assert "\n" not in str(error.value)
    with pytest.raises(ValueError, match=r"window steps in 0\.\.3"):
        make_learner("branch_grpo", {"split_steps": [0, 4]})


def test_shapes_reject_unknown_names_and_misplaced_options() -> None:
    learner = make_learner("tempflow", {})
    prompts, group_ids = learner.draw_prompts(1)
    common = {"seed": 0, "sde_kind": "flow_grpo", "noise_level": 0.7}
    with pytest.raises(ValueError, match="unknown rollout shape 'star'; valid: chain, anchor, tree"):
        get_shape("star")
    misplaced = [
        ("anchor", {"split_steps": (0,)}, "anchor rollouts take no option split_steps; valid: granularities"),
        ("chain", {"split_steps": (0,)}, "chain rollouts take no option split_steps; valid: none"),
        ("chain", {"granularities": (1,)}, "chain rollouts take no option granularities; valid: none"),
        ("tree", {"split_steps": (0,), "granularities": (1,)}, "tree rollouts take no option granularities"),
        ("tree", {}, "a tree rollout needs split_steps"),
    ]
    for shape, extra, message in misplaced:
        options = EpisodeOptions(**common, shape_options=extra)
        with pytest.raises(ValueError, match=message) as error:
            SHAPES[shape].collect(learner.env, prompts, group_ids, options)
        assert "\n" not in str(error.value)


def test_record_stores_the_shape(tmp_path) -> None:
    from safetensors import safe_open

    learner = make_learner("g2rpo", {"granularities": [1, 2]})
    result = learner.iteration(1)
    write_record(tmp_path, 1, result.record, result.prompts, result.shape)
    with safe_open(str(tmp_path / "rollouts" / "iter_000001.safetensors"), "pt") as stream:
        assert stream.metadata()["shape"] == "anchor"
        assert json.loads(stream.metadata()["prompts"]) == result.prompts
        assert stream.get_tensor("branch_rewards").shape == (8, 4, 2)


@pytest.mark.parametrize(("algo", "options"), [("tempflow", {}), ("branch_grpo", {"split_steps": [0]})])
def test_branched_rollouts_follow_a_sliding_window(algo, options) -> None:
    """slide:2:1:1 on T = 5: iteration 1 trains grid steps 0-1, iteration 2 steps 1-2 (docs/math.md section 9.1)."""
    learner = make_learner(algo, options, window_schedule="slide:2:1:1", group_size=2 if algo == "branch_grpo" else 4)
    starts = []
    for iteration in (1, 2):
        prompts, group_ids = learner.draw_prompts(iteration)
        rollout = learner.collect(prompts, group_ids, iteration)
        assert rollout.inputs.shape[1] == 2
        starts.append(learner.env.window.start)
        metrics = learner.iteration(iteration).metrics
        assert metrics["ratio_dev_first_update"] < 1e-5 and metrics["window_start"] == iteration - 1
    assert starts == [0, 1]
