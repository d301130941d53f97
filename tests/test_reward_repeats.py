"""Reward repeats and the noise estimate (docs/math.md section 10.1): scoring, counting, pooling, training, resume."""

import dataclasses
import itertools
import math
from collections.abc import Callable

import pytest
import torch
from lanes import first_fast
from scipy.stats import chi2
from tiny_model import TRAIN_ARGS, TRAIN_PROMPTS, TinyFlowModel, brightness_reward
from typer.testing import CliRunner

from creditzoo.algorithms import get_algorithm
from creditzoo.cli import app
from creditzoo.learner.checkpoint import read_metrics
from creditzoo.learner.config import TrainConfig
from creditzoo.learner.grpo import GRPOLearner
from creditzoo.rewards.noise import NoisyReward, NoisyScores, parse_noise_spec, pooled_noise_sd
from creditzoo.rollout import Rollout
from creditzoo.shapes import CollectedRollout, get_shape

runner = CliRunner()
NEW_SCHEMES = ["tp_prob", "tp_margin", "incremental_rts", "tp_grpo_strict_rts"]
BASE = TrainConfig(
    algo="tp_prob",
    prompts_per_iteration=2,
    group_size=3,
    num_steps=4,
    iterations=2,
    lora_rank=4,
    learning_rate=1e-2,
    clip_range=0.2,
)


def mean_brightness(images: torch.Tensor, prompts: list[str]) -> torch.Tensor:
    return images.mean(dim=(1, 2, 3))


def learner(noise: str | None = None, **overrides) -> GRPOLearner:
    config = dataclasses.replace(BASE, **overrides)
    spec = parse_noise_spec(noise) if noise else None
    reward = NoisyReward(brightness_reward, spec, seed=config.seed, repeats=config.reward_repeats)
    return GRPOLearner(config, TinyFlowModel(), reward, TRAIN_PROMPTS, torch.device("cpu"))


# ------------------------------------------------------------------------------------------ the reward


def test_repeats_average_the_calls_a_single_call_reward_makes_in_turn() -> None:
    images, prompts = torch.rand(5, 3, 4, 4, generator=torch.Generator().manual_seed(0)), ["a"] * 5
    spec = parse_noise_spec("gaussian:0.1")
    repeated = NoisyReward(mean_brightness, spec, seed=3, repeats=3).score(images, prompts)
    single = NoisyReward(mean_brightness, spec, seed=3)  # the same generator, called three times in a row
    calls = torch.stack([single(images, prompts) for _ in range(3)], 1).double()  # [5, 3]
    torch.testing.assert_close(repeated.noisy.double(), calls.mean(1), rtol=0, atol=1e-7)  # float32 rounding
    expected_var = ((calls - calls.mean(1, keepdim=True)) ** 2).sum(1) / 2  # ddof 1, by hand
    torch.testing.assert_close(repeated.variance.double(), expected_var, rtol=1e-5, atol=1e-9)
    assert torch.equal(repeated.clean, mean_brightness(images, prompts))  # a deterministic reward: its one value
    assert repeated.repeats == 3
    plain = NoisyReward(mean_brightness, spec, seed=3).score(images, prompts)
    assert plain.variance is None and plain.repeats == 1


def test_noise_estimate_worked_example_of_the_docs() -> None:
    """docs/math.md section 10.1: a judge scoring .60 then .64; the mean .62, the variance .0008, sigma .0283."""
    answers = iter([0.60, 0.64])

    def judge(images: torch.Tensor, prompts: list[str]) -> torch.Tensor:  # a random reward: one answer a call
        return torch.tensor([next(answers)], dtype=torch.float64)

    scores = NoisyReward(judge, None, repeats=2).score(torch.zeros(1, 3, 2, 2), ["a"])
    assert float(scores.noisy) == pytest.approx(0.62) and float(scores.clean) == pytest.approx(0.62)
    assert float(scores.variance) == pytest.approx(0.0008)
    assert pooled_noise_sd(scores.variance) == pytest.approx(0.0283, abs=1e-4)
    assert pooled_noise_sd(scores.variance) / math.sqrt(2) == pytest.approx(0.0200, abs=1e-4)


def test_a_noiseless_reward_has_zero_variance_and_pools_to_zero() -> None:
    scores = NoisyReward(mean_brightness, None, repeats=4).score(torch.rand(6, 3, 2, 2), ["a"] * 6)
    assert torch.equal(scores.variance, torch.zeros(6)) and pooled_noise_sd(scores.variance) == 0.0


def test_pooled_sd_estimates_the_per_call_sd() -> None:
    n, sd = 4000, 0.1
    reward = NoisyReward(mean_brightness, parse_noise_spec(f"gaussian:{sd}"), seed=1, repeats=3)
    scores = reward.score(torch.full((n, 3, 2, 2), 0.5, dtype=torch.float64), ["a"] * n)
    # the mean of n sample variances (2 degrees of freedom each) has relative SD sqrt(2 / (2 n)) = 1.6%, so its
    # square root 0.8%; 5% is over 6 of those
    assert pooled_noise_sd(scores.variance) == pytest.approx(sd, rel=0.05)


def test_bad_repeats_and_scores_are_refused() -> None:
    for repeats in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="repeats must be an integer >= 1"):
            NoisyReward(mean_brightness, None, repeats=repeats)
    with pytest.raises(ValueError, match="a variance comes with repeats >= 2"):
        NoisyScores(noisy=torch.zeros(2), clean=torch.zeros(2), repeats=2)


# ------------------------------------------------------------------------------------ counting and credit


@pytest.mark.parametrize("algo", first_fast(["tp_prob", "flow_grpo", "tempflow", "branch_grpo"]))
def test_repeats_multiply_the_reward_calls_exactly(algo: str) -> None:
    group = 4 if algo == "branch_grpo" else 3  # K = 3: the default tree splits at window steps 0 and 2, 4 leaves
    once = learner(algo=algo, group_size=group).iteration(1).metrics["reward_calls"]
    thrice = learner(algo=algo, group_size=group, reward_repeats=3).iteration(1).metrics["reward_calls"]
    assert once > 0 and thrice == 3 * once


def test_a_noiseless_reward_with_auto_gives_exactly_the_clean_scheme() -> None:
    aware = learner(reward_repeats=2, reward_noise_sd="auto").iteration(1)
    clean = learner(algo="tp_grpo_strict", reward_repeats=2).iteration(1)
    assert aware.metrics["reward_noise_sd_pooled"] == 0.0 and aware.metrics["credit_noise_sd"] == 0.0
    for name in ("step_rewards", "turning_points", "advantages", "completion_rewards"):
        assert torch.equal(aware.record[name], clean.record[name]), name
    assert aware.metrics["loss"] == clean.metrics["loss"]


def test_auto_gives_the_scheme_the_pooled_sd_over_root_n_and_records_it() -> None:
    result = learner("gaussian:0.05", reward_repeats=2, reward_noise_sd="auto").iteration(1)
    metrics, record = result.metrics, result.record
    variances = record["completion_rewards_var"]  # [B, K+1]: every image once (R_K is the final image)
    assert variances.shape == record["completion_rewards"].shape
    assert torch.equal(variances[:, -1], record["final_rewards_var"])
    pooled = math.sqrt(variances.double().mean())
    assert metrics["reward_noise_sd_pooled"] == pytest.approx(pooled, rel=1e-12)
    assert metrics["credit_noise_sd"] == pytest.approx(pooled / math.sqrt(2), rel=1e-12)
    assert float(record["credit_noise_sd"]) == metrics["credit_noise_sd"]
    # the record holds what analysis needs to replay the credit offline
    rollout = Rollout(group_ids=record["group_ids"], completion_rewards=record["completion_rewards"])
    replay = get_algorithm("tp_prob", noise_sd=float(record["credit_noise_sd"]))(rollout)
    assert torch.equal(replay.step_rewards, record["step_rewards"])


def test_a_declared_sd_is_divided_by_root_n() -> None:
    metrics = learner("gaussian:0.05", reward_repeats=4, reward_noise_sd=0.08).iteration(1).metrics
    assert metrics["credit_noise_sd"] == pytest.approx(0.04)
    assert metrics["reward_noise_sd_pooled"] > 0  # measured beside the declared value
    assert "credit_noise_sd" not in learner(algo="tp_grpo_strict").iteration(1).metrics


def test_repeated_noise_is_the_same_for_the_same_seed_and_iteration() -> None:
    a = learner("gaussian:0.05", reward_repeats=3, reward_noise_sd="auto").iteration(2)
    b = learner("gaussian:0.05", reward_repeats=3, reward_noise_sd="auto").iteration(2)
    assert a.record.keys() == b.record.keys()
    assert all(torch.equal(a.record[key], b.record[key]) for key in a.record)
    other = learner("gaussian:0.05", reward_repeats=3, reward_noise_sd="auto").iteration(3)
    assert not torch.equal(a.record["completion_rewards_var"], other.record["completion_rewards_var"])


# ---------------------------------------------------------------------------------------- command line

TINY = [*TRAIN_ARGS, "--eval-every", "0", "--eval-samples-per-prompt", "1", "--final-eval-samples", "1"]
NOISE = ["--reward-repeats", "2", "--reward-noise", "gaussian:0.05", "--reward-noise-sd", "auto"]


@pytest.mark.usefixtures("tiny_task")
@pytest.mark.parametrize("algo", first_fast(NEW_SCHEMES))
def test_one_tiny_iteration_of_each_new_scheme_with_repeats_and_auto(tmp_path, algo: str) -> None:
    run = tmp_path / "run"
    result = runner.invoke(app, ["train", "--algo", algo, *TINY, *NOISE, "--iterations", "1", "--run-dir", str(run)])
    assert result.exit_code == 0, result.output
    line = read_metrics(run)[-1]
    assert line["credit_noise_sd"] == pytest.approx(line["reward_noise_sd_pooled"] / math.sqrt(2))
    assert 0.01 < line["reward_noise_sd_pooled"] < 0.2  # a per-call SD of 0.05, from 12 two-call variances
    # B = 4 trajectories, K + 1 = 3 images each (steps 3, window 2), two calls per image
    assert line["reward_calls"] == 4 * 3 * 2


@pytest.mark.usefixtures("tiny_task")
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--reward-repeats", "0"], "reward_repeats must be >= 1"),
        (["--algo", "tp_prob", "--reward-noise-sd", "auto"], "reward_noise_sd=auto pools the noise from repeated"),
        (["--algo", "tp_prob", "--reward-noise-sd", "loud"], "reward_noise_sd must be auto or a finite number >= 0"),
        (["--algo", "tp_prob", "--reward-noise-sd", "-0.1"], "reward_noise_sd must be auto or a finite number >= 0"),
        (["--algo", "tp_grpo_strict", "--reward-noise-sd", "0.1"], "noise-aware algorithms (tp_margin, tp_prob"),
    ],
)
def test_bad_noise_options_are_one_line_and_exit_code_2(tmp_path, args: list[str], message: str) -> None:
    result = runner.invoke(app, ["train", *TINY, *args, "--run-dir", str(tmp_path / "run")])
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
@pytest.mark.usefixtures("tiny_task")
def test_resume_with_repeats_repeats_metrics_and_records(tmp_path, monkeypatch) -> None:
    from safetensors.torch import load_file

    import creditzoo.learner.run as run_module

    args = ["train", "--algo", "tp_prob", *TINY, *NOISE, "--iterations", "3", "--seed", "4"]
    assert runner.invoke(app, [*args, "--run-dir", str(tmp_path / "whole")]).exit_code == 0
    original = run_module.save_checkpoint

    def crash_after_two(run_dir, iteration, policy, state):
        path = original(run_dir, iteration, policy, state)
        if iteration == 2:
            raise KeyboardInterrupt
        return path

    monkeypatch.setattr(run_module, "save_checkpoint", crash_after_two)
    assert runner.invoke(app, [*args, "--run-dir", str(tmp_path / "cut")]).exit_code != 0
    monkeypatch.setattr(run_module, "save_checkpoint", original)
    resumed = runner.invoke(app, ["train", "--resume", str(tmp_path / "cut")])
    assert resumed.exit_code == 0, resumed.output

    def strip(lines):
        return [{k: v for k, v in line.items() if k != "seconds"} for line in lines]

    assert strip(read_metrics(tmp_path / "whole")) == strip(read_metrics(tmp_path / "cut"))
    for name in ("iter_000001", "iter_000003"):
        a = load_file(str(tmp_path / "whole" / "rollouts" / f"{name}.safetensors"))
        b = load_file(str(tmp_path / "cut" / "rollouts" / f"{name}.safetensors"))
        assert "completion_rewards_var" in a and a.keys() == b.keys()
        assert all(torch.equal(a[key], b[key]) for key in a)


# ------------------------------------------------------------------------------- anchor and tree rollouts

TREE_GROUP = 4  # K = 3: the default tree splits at window steps 0 and 2, 4 leaves a group


def staircase_judge() -> Callable[[torch.Tensor, list[str]], torch.Tensor]:
    """A random reward whose repeats are known: the r-th of three calls on a batch returns (1 + r) x brightness b.

    So with ``repeats=3`` each image's mean is 2b and its sample variance (b^2 + 0 + b^2) / 2 = b^2 = (mean / 2)^2:
    a variance belongs to its own image's mean, whatever the rollout layout.
    """
    calls = itertools.count()

    def judge(images: torch.Tensor, prompts: list[str]) -> torch.Tensor:
        return brightness_reward(images, prompts) * (1 + next(calls) % 3)

    return judge


def branched_learner(algo: str, reward_fn, noise: str | None = None, **overrides) -> GRPOLearner:
    """A tempflow / g2rpo (anchor) or branch_grpo (tree) learner on the tiny model."""
    group = {"group_size": TREE_GROUP if algo == "branch_grpo" else 3}
    config = dataclasses.replace(BASE, algo=algo, **{**group, **overrides})
    spec = parse_noise_spec(noise) if noise else None
    reward = NoisyReward(reward_fn, spec, seed=config.seed, repeats=config.reward_repeats)
    return GRPOLearner(config, TinyFlowModel(), reward, TRAIN_PROMPTS, torch.device("cpu"))


def each_image_once(record: dict[str, torch.Tensor], key: str) -> torch.Tensor:
    """A record's ``key`` scores with every scored image once: an anchor's completions and one anchor per group."""
    if "branch_rewards" not in record:
        return record[f"final_{key}"]  # a tree: every leaf a row
    first: dict[int, int] = {}  # group -> its first row, by a plain loop
    for row, group in enumerate(record["group_ids"].tolist()):
        first.setdefault(group, row)
    anchors = record[f"final_{key}"][sorted(first.values())]
    return torch.cat([record[f"branch_{key}"].flatten(), anchors])


@pytest.mark.parametrize("algo", ["g2rpo", "branch_grpo"])
def test_branched_rollouts_keep_each_images_variance_beside_its_mean(algo: str) -> None:
    # decode_batch 5: the scored latents (g2rpo: 36 completions + 2 anchors; tree: 8 leaves) span chunks
    result = branched_learner(algo, staircase_judge(), reward_repeats=3, decode_batch=5).iteration(1)
    record, metrics = result.record, result.metrics
    names = ["final_rewards", *(["branch_rewards"] if algo == "g2rpo" else [])]
    for name in names:  # [B] (the anchor image's, or the leaf's), [B, K, L]
        variance, mean = record[f"{name}_var"].double(), record[name].double()
        assert variance.shape == mean.shape
        assert len(set(variance.flatten().tolist())) > 1  # brightness differs: a misplaced variance would show
        # var = (mean / 2)^2 by construction; each side is rounded to float32 once or twice: rtol 1e-6 >> 2^-22
        torch.testing.assert_close(variance, (mean / 2) ** 2, rtol=1e-6, atol=0)
    if algo == "g2rpo":
        assert record["branch_rewards_var"].shape == (6, 3, 2)  # B = 2 x 3, K = 3, L = 2 granularities
    else:
        assert "branch_rewards_var" not in record
    # pooled over every scored image once: an anchor image once per group, not once per row of its group
    expected = math.sqrt(((each_image_once(record, "rewards").double() / 2) ** 2).mean())
    assert metrics["reward_noise_sd_pooled"] == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("algo", ["tempflow", "branch_grpo"])
def test_pooled_sd_of_branched_rollouts_estimates_the_injected_sd(algo: str) -> None:
    sd, repeats = 0.05, 3
    result = branched_learner(
        algo, brightness_reward, f"gaussian:{sd}", reward_repeats=repeats, prompts_per_iteration=4, group_size=4
    ).iteration(1)
    record, pooled = result.record, result.metrics["reward_noise_sd_pooled"]
    variances = each_image_once(record, "rewards_var").double()  # tempflow: 16 x 3 + 4 images; tree: 16 leaves
    assert pooled == pytest.approx(math.sqrt(variances.mean()), rel=1e-12)
    # brightness is deterministic, so each variance is sd^2 chi2(N - 1) / (N - 1), independent across images, and
    # n (N - 1) pooled^2 / sd^2 ~ chi2(n (N - 1)) exactly: accept its central 1 - 1e-6 (tempflow, 104 degrees of
    # freedom: pooled / sd in [0.68, 1.35]; the tree's 32: [0.46, 1.65])
    dof = variances.numel() * (repeats - 1)
    low, high = (math.sqrt(chi2.ppf(q, dof) / dof) * sd for q in (5e-7, 1 - 5e-7))
    assert low < pooled < high


@pytest.mark.parametrize("algo", ["tempflow", "g2rpo", "branch_grpo"])
def test_branched_rollouts_without_repeats_keep_no_variance(algo: str) -> None:
    learner_ = branched_learner(algo, brightness_reward, "gaussian:0.05")
    prompts, group_ids = learner_.draw_prompts(1)
    collected = learner_.collect(prompts, group_ids, 1)
    assert collected.final_rewards_var is None and collected.branch_rewards_var is None
    result = learner_.iteration(1)
    assert not [name for name in result.record if name.endswith("_var")]
    assert "reward_noise_sd_pooled" not in result.metrics


def test_an_anchor_image_counts_once_per_group_whatever_the_group_ids() -> None:
    # known by construction: two groups (ids 7 and 2, rows interleaved), K = 1, L = 1
    collected = CollectedRollout(
        prompts=["a", "b", "a", "b"],
        group_ids=torch.tensor([7, 2, 7, 2]),
        inputs=torch.zeros(4, 1, 1),
        outputs=torch.zeros(4, 1, 1),
        log_probs=torch.zeros(4, 1),
        final_rewards=torch.zeros(4),
        final_rewards_clean=torch.zeros(4),
        images=torch.zeros(4, 3, 1, 1),
        info={},
        shape="anchor",
        branch_rewards=torch.zeros(4, 1, 1),
        branch_rewards_clean=torch.zeros(4, 1, 1),
        final_rewards_var=torch.tensor([10.0, 20.0, 10.0, 20.0]),  # group 7's anchor image: 10; group 2's: 20
        branch_rewards_var=torch.tensor([1.0, 2.0, 3.0, 4.0]).view(4, 1, 1),
    )
    variances = get_shape("anchor").scored_variances(collected)
    assert sorted(variances.tolist()) == [1.0, 2.0, 3.0, 4.0, 10.0, 20.0]


@pytest.mark.usefixtures("tiny_task")
def test_an_anchor_run_with_repeats_records_and_replays_its_variances(tmp_path) -> None:
    from creditzoo.analysis import load_records

    run = tmp_path / "run"
    args = ["train", "--algo", "tempflow", *TINY, "--reward-repeats", "2", "--reward-noise", "gaussian:0.05"]
    result = runner.invoke(app, [*args, "--iterations", "1", "--run-dir", str(run)])
    assert result.exit_code == 0, result.output
    (record,) = load_records(run)
    tensors = record.tensors
    assert tensors["branch_rewards_var"].shape == tensors["branch_rewards"].shape  # [B, K, L]
    assert tensors["final_rewards_var"].shape == tensors["final_rewards"].shape  # [B]
    replay = get_algorithm("tempflow")(record.rollout())  # the record still replays its credit
    assert torch.equal(replay.step_rewards, tensors["step_rewards"])
    line = read_metrics(run)[-1]
    assert line["reward_noise_sd_pooled"] == pytest.approx(math.sqrt(each_image_once(tensors, "rewards_var").mean()))
