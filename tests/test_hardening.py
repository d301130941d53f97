"""Issue-7 hardening: devices, bad input through the one error path, and checks that can fail.

Every test here fails on the code before the hardening change (device-indexed sigma grid, tracebacks for
bad input, a lockstep test that shared its code under test, fresh adapters that change nothing).
"""

import dataclasses
import json

import gymnasium
import pytest
import torch
from lanes import first_fast
from tiny_model import DEVICES, TRAIN_ARGS, TRAIN_PROMPTS, TinyFlowModel, brightness_reward
from typer.testing import CliRunner

from creditzoo.algorithms import ALGORITHMS, get_algorithm
from creditzoo.cli import app
from creditzoo.envs import DenoisingConfig, DenoisingEnv, register_envs
from creditzoo.learner.checkpoint import read_metrics
from creditzoo.learner.config import TrainConfig
from creditzoo.learner.grpo import GRPOLearner
from creditzoo.rewards.noise import NoisyReward
from creditzoo.sampling import sde_step

runner = CliRunner()
PROMPTS = ["a red circle", "a red circle", "two blue squares", "two blue squares"]
TINY = [*TRAIN_ARGS, *["--eval-every", "2", "--eval-samples-per-prompt", "1"]]


pytestmark = pytest.mark.usefixtures("tiny_task")


def diffusers_sigmas(num_steps: int, shift: float) -> list[float]:
    """The grid straight from diffusers' scheduler: an independent source for the sigmas."""
    from diffusers import FlowMatchEulerDiscreteScheduler

    scheduler = FlowMatchEulerDiscreteScheduler(shift=shift)
    scheduler.set_timesteps(num_steps)
    return scheduler.sigmas.tolist()


# ------------------------------------------------------------------------------------------- lockstep


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("guidance", first_fast([1.0, 2.5]))
def test_lockstep_completions_equal_a_plain_euler_loop(device: str, guidance: float) -> None:
    """Completion rewards against single-sample Euler loops over diffusers' grid, with chunked model calls."""
    T, shift, seed = 5, 3.0, 11
    model = TinyFlowModel().to(device)
    config = DenoisingConfig(num_steps=T, shift=shift, guidance_scale=guidance, window_start=0, max_batch=3)
    env = DenoisingEnv(model, brightness_reward, num_envs=4, config=config)
    obs, _ = env.reset(seed=seed, options={"prompts": PROMPTS})
    generator = torch.Generator(device=device).manual_seed(0)
    states = [obs["latent"]]
    for j in range(T):
        sigma, sigma_next = env.sigmas[j], env.sigmas[j + 1]
        step = sde_step(env.velocity(), obs["latent"], sigma, sigma_next, noise_level=0.7, generator=generator)
        obs, reward, _, _, info = env.step(step.prev_sample)
        states.append(obs["latent"])
    assert states[0].device.type == device and info["completion_rewards"].shape == (4, T)
    # z_0 is the trajectory's own initial noise, drawn on the CPU from the seed (docs/math.md section 2)
    own_noise = torch.randn((4, *model.sample_shape), generator=torch.Generator().manual_seed(seed))
    torch.testing.assert_close(states[0].cpu(), own_noise, rtol=0, atol=0)
    sigmas = diffusers_sigmas(T, shift)
    with torch.no_grad():
        for b in range(4):
            cond = model.encode_prompts([PROMPTS[b]])
            for k in range(T - 1):  # R_k completes z_k = states[k]; k = 0 is the ODE sample from x_T
                x = states[k][b : b + 1].clone()
                for j in range(k, T):
                    v = model.velocity(x, torch.tensor([sigmas[j]], device=device), cond, guidance_scale=guidance)
                    x = x + (sigmas[j + 1] - sigmas[j]) * v
                expected = brightness_reward(model.decode(x), PROMPTS[b : b + 1]).cpu()
                torch.testing.assert_close(info["completion_rewards"][b, k : k + 1], expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(info["completion_rewards"][:, -1], reward)


def test_decode_batch_chunks_give_the_same_rewards() -> None:
    def episode(decode_batch):
        config = DenoisingConfig(num_steps=4, decode_batch=decode_batch)
        env = DenoisingEnv(TinyFlowModel(), brightness_reward, num_envs=4, config=config)
        obs, _ = env.reset(seed=1, options={"prompts": PROMPTS})
        for j in range(4):
            obs, _, _, _, info = env.step(obs["latent"] + (env.sigmas[j + 1] - env.sigmas[j]) * env.velocity())
        return info

    whole, chunked = episode(None), episode(3)
    torch.testing.assert_close(whole["completion_rewards"], chunked["completion_rewards"], rtol=0, atol=0)
    torch.testing.assert_close(whole["images"], chunked["images"], rtol=0, atol=0)
    with pytest.raises(ValueError, match="decode_batch must be an integer >= 1"):
        DenoisingConfig(decode_batch=0)


# -------------------------------------------------------------------------------------------- learner


def make_learner(device: str = "cpu", **overrides) -> GRPOLearner:
    base = TrainConfig(
        env="tiny", algo="tp_grpo_strict", prompts_per_iteration=2, group_size=3, num_steps=4, iterations=2,
        lora_rank=4, learning_rate=1e-2, clip_range=0.2, eval_steps=2, eval_samples_per_prompt=1,
    )  # fmt: skip
    config = dataclasses.replace(base, **overrides)
    reward = NoisyReward(brightness_reward, None, seed=config.seed)
    return GRPOLearner(config, TinyFlowModel(), reward, TRAIN_PROMPTS, torch.device(device))


def lora_state(learner: GRPOLearner) -> dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in learner.policy.named_parameters() if p.requires_grad}


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("algo", first_fast(ALGORITHMS))
def test_one_iteration_of_every_algorithm_on_each_device(device: str, algo: str) -> None:
    tree = get_algorithm(algo).rollout_shape == "tree"  # K = 2: the default tree splits once, 2 leaves a group
    learner = make_learner(device, algo=algo, num_steps=3, group_size=2 if tree else 3)
    before = lora_state(learner)
    metrics = learner.iteration(1).metrics
    assert metrics["ratio_dev_first_update"] < 1e-5
    assert metrics["loss"] is not None and torch.isfinite(torch.tensor(metrics["loss"]))
    after = lora_state(learner)
    assert any(not torch.equal(before[name], after[name]) for name in before)


@pytest.mark.parametrize(
    "overrides",
    first_fast(
        [
            {"sde_kind": "cps", "window_size": 2},
            {"sde_kind": "cps", "window_size": 2, "cps_log_prob": "gaussian"},
            {"guidance_scale": 3.0},
            {"window_start": 1, "window_size": 2},
            {"sde_kind": "cps", "guidance_scale": 2.0, "window_start": 1, "window_size": 2, "beta": 0.05},
        ]
    ),
    ids=["cps", "cps_gaussian", "guidance", "window_start", "all"],
)
def test_learner_end_to_end_with_cps_guidance_and_a_late_window(overrides: dict) -> None:
    """A sampler, guidance or window that the update did not reproduce would show as ratio != 1."""
    learner = make_learner(**overrides)
    before = lora_state(learner)
    for iteration in (1, 2):
        metrics = learner.iteration(iteration).metrics
        assert metrics["ratio_dev_first_update"] < 1e-5, metrics["ratio_dev_first_update"]
        assert torch.isfinite(torch.tensor(metrics["loss"]))
    after = lora_state(learner)
    assert any(not torch.equal(before[name], after[name]) for name in before)
    assert len(metrics["tp_rate_per_step"]) == learner.env.window.size


@pytest.mark.parametrize("chosen", ["released", "gaussian"])
def test_cps_log_probs_sampled_and_updated_are_the_chosen_quantity(chosen: str) -> None:
    """The recorded log-probs and the update's are the chosen CPS quantity, computed here by hand."""
    import math

    overrides = {} if chosen == "released" else {"cps_log_prob": chosen}
    learner = make_learner(sde_kind="cps", window_size=2, **overrides)
    assert learner.config.cps_log_prob == chosen  # resolved, so config.json records it
    prompts, group_ids = learner.draw_prompts(1)
    rollout = learner.collect(prompts, group_ids, 1)
    sigmas, a = learner.env.sigmas, learner.config.resolved_noise_level
    cond = learner.env.cond
    for k in range(2):
        z, z_next = rollout.inputs[:, k], rollout.outputs[:, k]
        sigma, nxt = float(sigmas[k]), float(sigmas[k + 1])
        with torch.no_grad():
            v = learner.policy.velocity(z, sigmas[k].expand(z.shape[0]), cond)
        std = nxt * math.sin(a * math.pi / 2)
        mean = (1 - nxt) * (z - sigma * v) + math.sqrt(nxt**2 - std**2) * (z + (1 - sigma) * v)
        squared = ((z_next - mean) ** 2).flatten(1).mean(1)
        if chosen == "released":
            expected = -squared
        else:
            expected = -squared / (2 * std**2) - math.log(std) - 0.5 * math.log(2 * math.pi)
        torch.testing.assert_close(rollout.log_probs[:, k], expected, rtol=1e-4, atol=1e-5)  # float32 re-derivation
        with torch.no_grad():
            updated = learner._policy_step(learner.policy, z, z_next, sigmas[k].expand(z.shape[0]), cond, k)
        torch.testing.assert_close(updated.log_prob, rollout.log_probs[:, k], rtol=0, atol=1e-6)


def test_cps_log_prob_is_refused_for_the_flow_grpo_sde_and_unknown_values() -> None:
    assert make_learner().config.cps_log_prob is None  # the default SDE's config is unchanged
    with pytest.raises(ValueError, match="cps_log_prob applies to sde_kind=cps only"):
        make_learner(cps_log_prob="released")
    with pytest.raises(ValueError, match="valid: released, gaussian"):
        make_learner(sde_kind="cps", window_size=2, cps_log_prob="exact")


def test_advantage_clipping_bites_and_the_loss_uses_the_clipped_values() -> None:
    clip = 0.3
    learner = make_learner(algo="incremental", adv_clip=clip, updates_per_iteration=1, group_size=4)
    result = learner.iteration(1)
    advantages = result.record["advantages"]  # [B, K], before clipping
    assert advantages.abs().max() > clip  # the clip bites
    # one minibatch of every kept sample, ratio 1 at the first update: loss = mean_k mean_b -clip(A)
    kept = advantages.abs().sum(1) > 0
    expected = -advantages[kept].clamp(-clip, clip).mean(0).mean()
    unclipped = -advantages[kept].mean(0).mean()
    assert result.metrics["loss"] == pytest.approx(float(expected), abs=1e-5)
    assert abs(float(expected) - float(unclipped)) > 1e-3  # so the check above can tell them apart


def test_reference_model_is_the_base_model_and_kl_grows_after_an_update() -> None:
    learner = make_learner(beta=0.1, updates_per_iteration=1)
    base = TinyFlowModel()  # same seed, same weights as the model under the adapter
    first = learner.iteration(1).metrics
    assert first["kl"] == pytest.approx(0.0, abs=1e-12)  # the first update starts from B = 0
    second = learner.iteration(2).metrics
    assert second["kl"] > 1e-8  # the adapter moved, so policy and reference now differ
    x, sigma = torch.randn(2, 3, 8, 8), torch.tensor([0.7, 0.3])
    cond = base.encode_prompts(["a red circle", "two blue squares"])
    with torch.no_grad():
        with learner.policy.disable_adapter():
            reference = learner.policy.velocity(x, sigma, cond)
        policy = learner.policy.velocity(x, sigma, cond)
        torch.testing.assert_close(reference, base.velocity(x, sigma, cond), rtol=0, atol=1e-6)
    assert (policy - reference).abs().max() > 1e-6


# ---------------------------------------------------------------------------------------------- gymnasium


def test_make_vec_builds_the_registered_task_with_its_training_reward() -> None:
    from creditzoo.learner.run import build_reward
    from creditzoo.tasks import get_task

    register_envs()
    try:
        env = gymnasium.make_vec("creditzoo/TinyTest-v0", num_envs=3, arrays="torch")
        assert isinstance(env, DenoisingEnv) and isinstance(env.model, TinyFlowModel) and env.num_envs == 3
        task = get_task("tiny")
        trained_with = build_reward(task, TrainConfig(env="tiny", prompts_per_iteration=2)).reward_fn
        assert env.reward is trained_with
        obs, _ = env.reset(seed=0, options={"prompts": TRAIN_PROMPTS[:3]})
        assert obs["latent"].shape == (3, 3, 8, 8)
    finally:
        gymnasium.registry.pop("creditzoo/TinyTest-v0", None)
    geneval = gymnasium.make_vec("creditzoo/GenEval-v0", num_envs=1)  # numpy-facing: the reward is underneath
    assert geneval.unwrapped.reward is build_reward(get_task("geneval"), TrainConfig()).reward_fn


# -------------------------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--prompts-per-iteration", "500"], "prompts_per_iteration=500 exceeds the 4 train prompts of tiny"),
        (["--device", "gpu"], "unknown device 'gpu'; valid: auto, cpu, cuda, cuda:N"),
        (["--reward", "clip"], "unknown reward 'clip' for tiny; valid: bright"),
        (["--completion", "ode:0"], "malformed completion mode 'ode:0'"),
        (["--std-mode", "batch"], "unknown std_mode 'batch'; valid: group, global, none"),
    ],
)
def test_bad_train_input_is_one_line_exit_2(tmp_path, args: list[str], message: str) -> None:
    result = runner.invoke(app, ["train", *TINY, *args, "--run-dir", str(tmp_path / "run")])
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output
    assert result.output.strip().count("\n") == 0
    assert not (tmp_path / "run").exists()  # nothing written for bad input


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_asked_for_without_cuda_is_one_line(tmp_path) -> None:
    result = runner.invoke(app, ["train", *TINY, "--device", "cuda", "--run-dir", str(tmp_path / "run")])
    assert result.exit_code == 2 and "CUDA is not available" in result.output
    assert "Traceback" not in result.output and result.exception is None or isinstance(result.exception, SystemExit)


def test_config_file_and_python_api_get_the_same_messages(tmp_path) -> None:
    toml = tmp_path / "bad.toml"
    toml.write_text('env = "tiny"\ncompletion = "ode:zero"\n')
    result = runner.invoke(app, ["train", "--config", str(toml)])
    assert result.exit_code == 2 and "malformed completion mode 'ode:zero'" in result.output
    with pytest.raises(ValueError, match="malformed completion mode 'ode:zero'"):
        TrainConfig(env="tiny", completion="ode:zero")
    with pytest.raises(ValueError, match="unknown device 'tpu'"):
        TrainConfig(env="tiny", device="tpu")
    with pytest.raises(ValueError, match="unknown reward 'clip' for tiny"):
        TrainConfig(env="tiny", reward="clip")


@pytest.mark.slow
def test_resume_with_nothing_left_to_do_says_so_and_changes_nothing(tmp_path) -> None:
    run = tmp_path / "run"
    assert runner.invoke(app, ["train", *TINY, "--iterations", "2", "--run-dir", str(run)]).exit_code == 0
    before = {path: path.read_bytes() for path in run.rglob("*") if path.is_file()}
    for iterations in ([], ["--iterations", "2"], ["--iterations", "1"]):
        result = runner.invoke(app, ["train", "--resume", str(run), *iterations])
        assert result.exit_code == 2, result.output
        assert "nothing left to do" in result.output and "iteration 2" in result.output
    assert {path: path.read_bytes() for path in run.rglob("*") if path.is_file()} == before


@pytest.mark.slow
def test_resume_with_reward_noise_repeats_metrics_and_records(tmp_path, monkeypatch) -> None:
    import creditzoo.learner.run as run_module

    args = [*TINY, "--iterations", "3", "--seed", "2", "--reward-noise", "gaussian:0.05"]
    assert runner.invoke(app, ["train", *args, "--run-dir", str(tmp_path / "whole")]).exit_code == 0
    original = run_module.save_checkpoint

    def crash_after_two(run_dir, iteration, policy, state):
        path = original(run_dir, iteration, policy, state)
        if iteration == 2:
            raise KeyboardInterrupt
        return path

    monkeypatch.setattr(run_module, "save_checkpoint", crash_after_two)
    assert runner.invoke(app, ["train", *args, "--run-dir", str(tmp_path / "cut")]).exit_code != 0
    monkeypatch.setattr(run_module, "save_checkpoint", original)
    resumed = runner.invoke(app, ["train", "--resume", str(tmp_path / "cut")])
    assert resumed.exit_code == 0, resumed.output

    def strip(lines):
        return [{k: v for k, v in line.items() if k != "seconds"} for line in lines]

    whole, cut = read_metrics(tmp_path / "whole"), read_metrics(tmp_path / "cut")
    assert strip(whole) == strip(cut)
    assert whole[-1]["reward_mean"] != whole[-1]["reward_clean_mean"]  # the noise was really applied
    from safetensors.torch import load_file

    for name in ("iter_000001", "iter_000003"):
        a = load_file(str(tmp_path / "whole" / "rollouts" / f"{name}.safetensors"))
        b = load_file(str(tmp_path / "cut" / "rollouts" / f"{name}.safetensors"))
        assert a.keys() == b.keys() and all(torch.equal(a[key], b[key]) for key in a)


# ------------------------------------------------------------------------------------------- evaluation


@pytest.mark.slow
def test_eval_lora_changes_the_model_it_evaluates(tmp_path) -> None:
    from peft import LoraConfig, get_peft_model

    from creditzoo.cli.evaluate import _load_model, _target
    from creditzoo.models.toy import LORA_TARGET_MODULES, load_geneval_model

    adapter = get_peft_model(load_geneval_model(), LoraConfig(r=2, target_modules=list(LORA_TARGET_MODULES)))
    with torch.no_grad():
        for name, parameter in adapter.named_parameters():
            if "lora_B" in name:
                parameter.normal_(0.0, 0.5, generator=torch.Generator().manual_seed(len(name)))
    adapter.save_pretrained(str(tmp_path / "lora"))
    plain = _load_model(_target("geneval", None, None, None, None, "cpu", None))
    adapted = _load_model(_target("geneval", None, tmp_path / "lora", None, None, "cpu", None))
    x, sigma = torch.randn(2, 3, 32, 32), torch.tensor([0.9, 0.4])
    cond = plain.encode_prompts(["a circle", "two squares"])
    with torch.no_grad():
        assert (plain.velocity(x, sigma, cond) - adapted.velocity(x, sigma, cond)).abs().max() > 1e-3
    args = ["eval", "--json", "--steps", "3", "--samples-per-prompt", "1", "--min-images-per-category", "0"]
    args += ["--out", str(tmp_path / "grid.png")]
    without = json.loads(runner.invoke(app, args).stdout.strip().splitlines()[-1])
    with_lora = json.loads(
        runner.invoke(app, [*args, "--lora", str(tmp_path / "lora")]).stdout.strip().splitlines()[-1]
    )
    assert with_lora["partial_score"] != without["partial_score"]


def test_evaluate_samples_what_evaluation_prompts_lists() -> None:
    from creditzoo.learner.evaluate import EvalConfig, evaluate, evaluation_prompts
    from creditzoo.tasks import get_task

    task = get_task("tiny")
    config = EvalConfig(num_steps=2, samples_per_prompt=1, min_images_per_category=3)
    result = evaluate(TinyFlowModel(), task, config)
    assert result.prompts == evaluation_prompts(task, config)
    assert len(result.prompts) == 6  # two single-prompt categories raised to 3 images each


def test_pretrain_to_an_unwritable_path_is_one_line(tmp_path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    result = runner.invoke(app, ["pretrain", "--steps", "1", "--out", str(blocker / "model.safetensors")])
    assert result.exit_code == 2 and "cannot write --out" in result.output
    assert result.output.strip().count("\n") == 0


def test_python_api_gets_the_task_defaults_the_cli_applies() -> None:
    from creditzoo.cli.train import resolve_config
    from creditzoo.tasks import get_task

    defaults = get_task("geneval").train_defaults
    config = TrainConfig.for_task("geneval", seed=4)
    assert config.learning_rate == defaults["learning_rate"] != TrainConfig().learning_rate
    assert config == resolve_config(None, {"env": "geneval", "seed": 4})
    assert TrainConfig.for_task("geneval", learning_rate=1e-4).learning_rate == 1e-4


@pytest.mark.slow
def test_chunk_sizes_reach_the_environment_from_the_command_line(tmp_path) -> None:
    from creditzoo.learner.grpo import resolve_max_batch

    assert resolve_max_batch(None, torch.device("cpu")) == 128 and resolve_max_batch(0, torch.device("cpu")) is None
    assert resolve_max_batch(None, torch.device("cuda")) is None and resolve_max_batch(7, torch.device("cuda")) == 7
    learner = make_learner(max_batch=5, decode_batch=3)
    assert learner.env.config.max_batch == 5 and learner.env.config.decode_batch == 3
    run = tmp_path / "run"
    result = runner.invoke(app, ["train", *TINY, "--iterations", "1", "--max-batch", "3", "--decode-batch", "2",
                                 "--run-dir", str(run)])  # fmt: skip
    assert result.exit_code == 0, result.output
    stored = json.loads((run / "config.json").read_text())
    assert stored["max_batch"] == 3 and stored["decode_batch"] == 2
    bad = runner.invoke(app, ["train", *TINY, "--decode-batch", "0", "--run-dir", str(tmp_path / "bad")])
    assert bad.exit_code == 2 and "decode_batch must be >= 1" in bad.output


def test_a_cps_run_stored_before_cps_log_prob_resumes_with_the_density_it_trained_with(tmp_path) -> None:
    from creditzoo.learner.run import load_run_config

    stored = TrainConfig(env="tiny", sde_kind="cps", window_size=2, num_steps=4, prompts_per_iteration=2).to_dict()
    assert stored.pop("cps_log_prob") == "released"  # today's default, written out
    (tmp_path / "config.json").write_text(json.dumps(stored))  # as an older version wrote it: no such key
    assert load_run_config(tmp_path).cps_log_prob == "gaussian"
    (tmp_path / "config.json").write_text(json.dumps({**stored, "cps_log_prob": "released"}))
    assert load_run_config(tmp_path).cps_log_prob == "released"
